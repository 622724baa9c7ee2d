// Hugging Face tokenizer.json (+ tokenizer_config.json) loader and encoder/decoder.
//
// Pipeline, as in the tokenizers library: invalid UTF-8 -> U+FFFD; added tokens split out; each
// remaining section normalized, pre-tokenized and BPE-encoded; the post-processor adds BOS/EOS when
// special tokens are requested. Supported components are listed in docs/tokenizer.md; anything
// else is an error naming the component type.
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace rad {

class Tokenizer {
 public:
  // Loads DIR/tokenizer.json and, when present, DIR/tokenizer_config.json (BOS/EOS names); or, when
  // DIR is a GGUF file, the tokenizer its tokenizer.ggml.* metadata describes.
  static Tokenizer load(const std::string& dir);
  // From parsed files; `config` may be null.
  static Tokenizer from_json(const nlohmann::json& tokenizer, const nlohmann::json& config);

  // add_special_tokens: put special_prefix() before and special_suffix() after the text.
  std::vector<int64_t> encode(std::string_view text, bool add_special_tokens) const;
  // Invalid ids are an error; the text is valid UTF-8 (lossy where the tokens are).
  std::string decode(const std::vector<int64_t>& ids, bool skip_special_tokens) const;

  // One past the largest id (model vocabulary and added tokens).
  int64_t vocab_size() const;
  std::optional<int64_t> token_to_id(std::string_view token) const;
  std::optional<std::string> id_to_token(int64_t id) const;
  std::optional<int64_t> bos_id() const;
  std::optional<int64_t> eos_id() const;
  // Whether encode(..., true) adds anything (a post-processor with special tokens).
  bool has_post_processor() const;
  // The special tokens encode(..., true) puts before / after a text (BOS, EOS): the
  // post-processor's, with tokenizer_config.json's add_bos_token / add_eos_token, when given,
  // deciding whether BOS leads / EOS ends them.
  const std::vector<int64_t>& special_prefix() const;
  const std::vector<int64_t>& special_suffix() const;

 private:
  static Tokenizer from_json_checked(const nlohmann::json& tokenizer, const nlohmann::json& config);
  struct Impl;
  std::shared_ptr<const Impl> impl_;
};

// The one rule for prompts that every command follows (generate/forward --text, chat, bench,
// serve's /v1/completions): a prompt gets the tokenizer's special tokens (BOS for Llama-style
// tokenizers) as Hugging Face's tokenizer(text) and llama.cpp's llama_tokenize(add_special=true)
// add them, unless the user turns them off (the commands' --no-special-tokens). A text that already
// starts with the BOS token still gets another one, as both of them do; a warning says so.
std::vector<int64_t> encode_prompt(const Tokenizer& tokenizer, std::string_view text, bool add_special_tokens);

// Text rendered by a chat template: encoded without special tokens. The template writes BOS
// itself where the model wants it ({{ bos_token }} in Llama-3's), and Hugging Face's
// apply_chat_template(tokenize=True) encodes with add_special_tokens=False for that reason, so the
// chat path never adds a second BOS (and does not strip the template's either).
std::vector<int64_t> encode_chat_prompt(const Tokenizer& tokenizer, std::string_view rendered);

// Special tokens a synthetic prompt (bench) starts with: special_prefix() or nothing, as
// llama-bench puts BOS first when the vocabulary adds it.
std::vector<int64_t> prompt_prefix(const Tokenizer& tokenizer, bool add_special_tokens);

}  // namespace rad
