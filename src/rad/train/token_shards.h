// Corpora that do not fit in memory: `radistill tokenize-corpus` streams plain-text and JSONL files
// through the model's tokenizer once, in bounded memory, into a token directory; pretrain and
// distill memory-map it as their --corpus.
//
// A token directory holds shards train-NNNNN.npy and heldout-NNNNN.npy (1-D .npy, uint16 when the
// vocabulary has at most 65536 ids, else uint32; every shard but the last of its split holds
// exactly shard_tokens ids) and the index radistill-tokens.json: the inputs (path, size, mtime,
// lines), the tokenizer's hash and vocabulary size, the dtype, each shard's file and token count and
// where in the inputs it starts, and "complete". Shards and index are written atomically (temp file,
// fsync, rename), so a re-run with the same arguments keeps every finished shard and continues.
//
// The ids are those of TokenCorpus::from_text on the inputs read as one text: a text file as it is
// (its last line ending in a newline), a JSONL file as the concatenation of each line's `text` field,
// each ending in a newline (an empty text adds nothing). The last heldout_fraction of those lines
// is the held-out split, and lines are encoded in the same blocks as from_text, so a token directory
// of one text file trains exactly like the text file itself.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "rad/tasks/scorer.h"
#include "rad/train/data.h"

namespace rad {

inline constexpr const char* kTokenIndexFile = "radistill-tokens.json";

struct TokenizeCorpusOptions {
  // Files ending in .jsonl or .ndjson are JSONL (one JSON object per line; blank lines skipped);
  // anything else is UTF-8 text.
  std::vector<std::string> inputs;
  std::string out_dir;
  int64_t shard_tokens = int64_t{1} << 26;  // 128 MiB of uint16 ids per shard
  double heldout_fraction = 0.02;
  std::string text_field = "text";              // the JSONL field holding the document
  int64_t max_line_bytes = int64_t{64} << 20;  // bound on one input line (memory stays bounded)
  bool progress = true;
};

// The tokenizer a corpus is encoded with: its encoder (no special tokens), a content hash that ties
// the token directory to it, its vocabulary size and a name for messages.
struct CorpusTokenizer {
  tasks::Encoder encode;
  std::string hash;
  int64_t vocab_size = 0;
  std::string name;
};

struct TokenizeCorpusResult {
  int64_t train_tokens = 0;
  int64_t heldout_tokens = 0;
  int64_t shards_kept = 0;     // finished shards found from an earlier run and skipped
  int64_t shards_written = 0;  // shards written by this run
};

TokenizeCorpusResult tokenize_corpus(const TokenizeCorpusOptions& options, const CorpusTokenizer& tokenizer);

// True when `path` is a directory holding radistill-tokens.json.
bool is_token_dir(const std::string& path);

// What a --corpus names: a token directory (true) or, otherwise, a text file (false). A directory
// without the index is an error naming it.
bool corpus_is_token_dir(const std::string& path);

// Memory-maps a finished token directory (no copy of the corpus). Fails naming the directory or
// shard when it is incomplete, a shard is missing, truncated or of another size than the index
// says, or it was tokenized with a tokenizer whose hash is not `tokenizer_hash`.
TokenCorpus load_token_dir(const std::string& dir, const std::string& tokenizer_hash, int64_t vocab_size);

// The --corpus of pretrain and distill: a token directory (memory-mapped, checked against the
// tokenizer in tokenizer_dir; its split was fixed when it was tokenized, so an explicit
// --heldout-fraction that differs is an error) or a UTF-8 text file, read and tokenized in memory.
TokenCorpus load_corpus(const std::string& path, const std::string& tokenizer_dir, const tasks::Encoder& encode,
                        int64_t vocab_size, double heldout_fraction, bool heldout_fraction_given);

// "fnv1a64:<hex>" of DIR/tokenizer.json and DIR/tokenizer_config.json (when present) as canonical
// JSON (sorted keys, no whitespace), so reformatting a file does not change it.
std::string tokenizer_hash(const std::string& model_dir);

}  // namespace rad
