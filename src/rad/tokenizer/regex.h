// A compiled PCRE2 regex (UTF + UCP, JIT) for the Split pre-tokenizer and the Replace
// normalizer/decoder. Patterns are tokenizer.json's Oniguruma-flavoured regexes; `\s`/`\S` are
// rewritten to also cover U+0085, which Oniguruma counts as whitespace and PCRE2 10.42 does not.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace rad {

class Regex {
 public:
  explicit Regex(const std::string& pattern);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // Calls on_match(begin, end) for every non-overlapping match in `text` (byte offsets), left to
  // right; empty matches are skipped. `text` must be valid UTF-8.
  template <typename F>
  void for_each_match(std::string_view text, F&& on_match) const {
    size_t start = 0;
    size_t b, e;
    while (start <= text.size() && find(text, start, b, e)) {
      if (e > b) on_match(b, e);
      if (e > b) {
        start = e;
      } else {  // empty match: step over one code point
        start = b + 1;
        while (start < text.size() && (static_cast<unsigned char>(text[start]) & 0xC0) == 0x80) ++start;
      }
    }
  }

  // All matches as (begin, end) pairs.
  std::vector<std::pair<size_t, size_t>> find_all(std::string_view text) const;

  const std::string& pattern() const { return pattern_; }

 private:
  bool find(std::string_view text, size_t start, size_t& begin, size_t& end) const;

  std::string pattern_;
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Escapes a literal string for use in a PCRE2 pattern.
std::string regex_escape(std::string_view literal);

}  // namespace rad
