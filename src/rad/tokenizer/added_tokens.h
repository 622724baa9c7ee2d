// Added (and special) tokens of tokenizer.json: found in the text before pre-tokenization, by
// leftmost-longest match, honouring lstrip / rstrip / single_word. Tokens with normalized = false
// are matched in the raw text, the others in the normalized text, as the tokenizers library does.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace rad {

struct AddedToken {
  std::string content;
  int64_t id = 0;
  bool special = false, lstrip = false, rstrip = false, single_word = false, normalized = false;
};

class AddedTokenMatcher {
 public:
  // `patterns[i]` is the text to look for (the content, normalized where needed) of tokens[i].
  AddedTokenMatcher(std::vector<std::string> patterns, std::vector<AddedToken> tokens);
  AddedTokenMatcher() = default;

  bool empty() const { return patterns_.empty(); }
  const AddedToken& token(int index) const { return tokens_[static_cast<size_t>(index)]; }

  // Splits `text` into segments; on_segment(begin, end, token_index) with token_index -1 for plain
  // text (never empty) and the index of the matched token otherwise.
  template <typename F>
  void split(std::string_view text, F&& on_segment) const {
    size_t last = 0, pos = 0;
    while (pos < text.size()) {
      size_t b, e;
      int index;
      if (!find(text, pos, last, b, e, index)) break;
      if (b > last) on_segment(last, b, -1);
      on_segment(b, e, index);
      last = pos = e;
    }
    if (last < text.size()) on_segment(last, text.size(), -1);
  }

 private:
  // Finds the next match at or after `pos`; [b, e) includes stripped whitespace (never before `floor`).
  bool find(std::string_view text, size_t pos, size_t floor, size_t& b, size_t& e, int& index) const;
  int longest_at(std::string_view text, size_t pos, size_t& len) const;

  struct Node {
    std::vector<std::pair<unsigned char, int>> children;
    int token = -1;
  };
  std::vector<std::string> patterns_;
  std::vector<AddedToken> tokens_;
  std::vector<Node> trie_;
  bool first_byte_[256] = {};
};

}  // namespace rad
