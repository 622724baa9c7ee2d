// tokenizer.json's {"String": "..."} / {"Regex": "..."} pattern, used by Split, Replace (normalizer
// and decoder).
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "rad/tokenizer/regex.h"

namespace rad {

class Pattern {
 public:
  static Pattern from_json(const nlohmann::json& pattern);
  static Pattern literal(std::string text);
  static Pattern regex(const std::string& regex);

  // Non-overlapping matches (byte offsets), left to right, non-empty.
  template <typename F>
  void for_each_match(std::string_view text, F&& on_match) const {
    if (regex_) {
      regex_->for_each_match(text, on_match);
      return;
    }
    if (literal_.empty()) return;
    size_t pos = 0;
    while ((pos = text.find(literal_, pos)) != std::string_view::npos) {
      on_match(pos, pos + literal_.size());
      pos += literal_.size();
    }
  }

  std::string replace_all(std::string_view text, std::string_view content) const;

 private:
  std::string literal_;
  std::shared_ptr<Regex> regex_;
};

}  // namespace rad
