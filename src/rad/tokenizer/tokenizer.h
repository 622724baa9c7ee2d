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
  // Loads DIR/tokenizer.json and, when present, DIR/tokenizer_config.json (BOS/EOS names).
  static Tokenizer load(const std::string& dir);
  // From parsed files; `config` may be null.
  static Tokenizer from_json(const nlohmann::json& tokenizer, const nlohmann::json& config);

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

 private:
  static Tokenizer from_json_checked(const nlohmann::json& tokenizer, const nlohmann::json& config);
  struct Impl;
  std::shared_ptr<const Impl> impl_;
};

}  // namespace rad
