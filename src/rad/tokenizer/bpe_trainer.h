// Byte-level BPE trainer: writes a Llama-3-style tokenizer.json (Split regex + ByteLevel, BPE with
// ignore_merges, ByteLevel decoder, TemplateProcessing for BOS) and tokenizer_config.json that
// this loader and Hugging Face's libraries accept.
//
// Deterministic: words are counted, sorted, and merged by (count desc, pair ids asc). Strings given
// in `forced_tokens` get their merges first (lowest ranks), so each encodes to one token when the
// pre-tokenizer keeps it whole (e.g. "0".."99" under the Llama-3 regex).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace rad {

struct BpeTrainerOptions {
  int64_t vocab_size = 4096;                 // bytes + merges + special tokens
  int64_t min_frequency = 2;                 // stop when the best pair is rarer
  std::vector<std::string> special_tokens;   // added tokens (special), ids after the merges
  std::optional<std::string> bos_token;      // added at the start by the post-processor
  std::optional<std::string> eos_token;      // named in tokenizer_config.json
  std::vector<std::string> forced_tokens;    // must become single tokens
  std::string split_regex;                   // empty: Llama-3's
  bool show_progress = true;
};

struct TrainedTokenizer {
  std::string tokenizer_json;   // contents of tokenizer.json
  std::string config_json;      // contents of tokenizer_config.json
  int64_t vocab_size = 0;
  int64_t n_merges = 0;
  int64_t n_words = 0;          // distinct pre-tokenized words in the corpus
};

TrainedTokenizer train_bpe(std::string_view corpus, const BpeTrainerOptions& options);

// Trains, writes DIR/tokenizer.json + DIR/tokenizer_config.json atomically, reloads them and checks
// that every forced token encodes to a single id (throws rad::Error naming any that does not).
TrainedTokenizer train_bpe_tokenizer(std::string_view corpus, const BpeTrainerOptions& options, const std::string& out_dir);

}  // namespace rad
