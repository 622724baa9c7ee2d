// tokenizer.json "pre_tokenizer" components: Sequence, Split, ByteLevel, Metaspace, Digits,
// Whitespace, WhitespaceSplit. Any other type is rejected by make_pre_tokenizer with an error
// naming it.
//
// Pre-tokenizers work on a PieceList: one text buffer and the byte spans of its pieces. Splitting
// only produces new spans over the same buffer (no copies); components that rewrite bytes
// (ByteLevel, Metaspace) build a new buffer.
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace rad {

struct Piece {
  size_t begin = 0, end = 0;
  bool at_text_start = false;  // starts at offset 0 of the whole input (Metaspace prepend_scheme "first")
};

struct PieceList {
  std::string text;
  std::vector<Piece> pieces;
  std::string_view view(const Piece& p) const { return std::string_view(text).substr(p.begin, p.end - p.begin); }
};

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  virtual void pre_tokenize(PieceList& list) const = 0;
};

// Returns nullptr for a JSON null.
std::unique_ptr<PreTokenizer> make_pre_tokenizer(const nlohmann::json& config);

// GPT-2's pre-tokenization regex, used by ByteLevel with use_regex = true.
extern const char* const kGpt2SplitRegex;
// The Split regex of Llama-3's tokenizer.json (the trainer's default).
extern const char* const kLlama3SplitRegex;

}  // namespace rad
