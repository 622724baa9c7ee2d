#include "rad/tokenizer/pattern.h"

#include <nlohmann/json.hpp>

#include "rad/core/error.h"

namespace rad {

Pattern Pattern::from_json(const nlohmann::json& pattern) {
  if (pattern.is_object() && pattern.contains("String")) return literal(pattern.at("String").get<std::string>());
  if (pattern.is_object() && pattern.contains("Regex")) return regex(pattern.at("Regex").get<std::string>());
  fail("tokenizer.json: unsupported pattern {} (expected {{\"String\": ...}} or {{\"Regex\": ...}})", pattern.dump());
}

Pattern Pattern::literal(std::string text) {
  Pattern p;
  p.literal_ = std::move(text);
  return p;
}

Pattern Pattern::regex(const std::string& regex) {
  Pattern p;
  p.regex_ = std::make_shared<Regex>(regex);
  return p;
}

std::string Pattern::replace_all(std::string_view text, std::string_view content) const {
  std::string out;
  out.reserve(text.size());
  size_t last = 0;
  for_each_match(text, [&](size_t b, size_t e) {
    out.append(text.data() + last, b - last);
    out.append(content);
    last = e;
  });
  out.append(text.data() + last, text.size() - last);
  return out;
}

}  // namespace rad
