#include "rad/tokenizer/added_tokens.h"

#include <cctype>

namespace rad {
namespace {

bool is_space(unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }
// Approximation of \w for single_word: ASCII alphanumerics, '_' and any non-ASCII byte.
bool is_word_byte(unsigned char c) { return std::isalnum(c) || c == '_' || c >= 0x80; }

}  // namespace

AddedTokenMatcher::AddedTokenMatcher(std::vector<std::string> patterns, std::vector<AddedToken> tokens)
    : patterns_(std::move(patterns)), tokens_(std::move(tokens)) {
  trie_.emplace_back();
  for (size_t t = 0; t < patterns_.size(); ++t) {
    const std::string& p = patterns_[t];
    if (p.empty()) continue;
    first_byte_[static_cast<unsigned char>(p[0])] = true;
    int node = 0;
    for (unsigned char c : p) {
      int child = -1;
      for (auto [ch, idx] : trie_[node].children)
        if (ch == c) child = idx;
      if (child < 0) {
        child = static_cast<int>(trie_.size());
        trie_[node].children.emplace_back(c, child);
        trie_.emplace_back();
      }
      node = child;
    }
    if (trie_[node].token < 0) trie_[node].token = static_cast<int>(t);
  }
}

int AddedTokenMatcher::longest_at(std::string_view text, size_t pos, size_t& len) const {
  int node = 0, best = -1;
  for (size_t i = pos; i < text.size(); ++i) {
    int child = -1;
    for (auto [ch, idx] : trie_[node].children)
      if (ch == static_cast<unsigned char>(text[i])) child = idx;
    if (child < 0) break;
    node = child;
    if (trie_[node].token >= 0) {
      best = trie_[node].token;
      len = i + 1 - pos;
    }
  }
  return best;
}

bool AddedTokenMatcher::find(std::string_view text, size_t pos, size_t floor, size_t& b, size_t& e, int& index) const {
  for (size_t i = pos; i < text.size(); ++i) {
    if (!first_byte_[static_cast<unsigned char>(text[i])]) continue;
    size_t len = 0;
    int t = longest_at(text, i, len);
    if (t < 0) continue;
    const AddedToken& tok = tokens_[t];
    if (tok.single_word) {
      bool left_ok = i == 0 || !is_word_byte(static_cast<unsigned char>(text[i - 1]));
      bool right_ok = i + len >= text.size() || !is_word_byte(static_cast<unsigned char>(text[i + len]));
      if (!left_ok || !right_ok) continue;
    }
    b = i;
    e = i + len;
    if (tok.lstrip)
      while (b > floor && is_space(static_cast<unsigned char>(text[b - 1]))) --b;
    if (tok.rstrip)
      while (e < text.size() && is_space(static_cast<unsigned char>(text[e]))) ++e;
    index = t;
    return true;
  }
  return false;
}

}  // namespace rad
