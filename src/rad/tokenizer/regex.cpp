#define PCRE2_CODE_UNIT_WIDTH 8
#include "rad/tokenizer/regex.h"

#include <pcre2.h>

#include <mutex>

#include "rad/core/error.h"

namespace rad {

struct Regex::Impl {
  pcre2_code* code = nullptr;
  bool jit = false;
  // One match-data block per Regex; guarded so that const use from several threads stays safe.
  mutable std::mutex mutex;
  pcre2_match_data* data = nullptr;
};

// Oniguruma (the engine of Hugging Face tokenizers) treats U+0085 as \s; PCRE2 10.42 with UCP does
// not. Rewrites \s and \S so that the two agree.
static std::string rewrite_whitespace_classes(const std::string& p) {
  std::string out;
  bool in_class = false;
  for (size_t i = 0; i < p.size(); ++i) {
    char c = p[i];
    if (c == '\\' && i + 1 < p.size()) {
      char n = p[i + 1];
      if (n == 's') {
        out += in_class ? "\\s\\x{85}" : "[\\s\\x{85}]";
      } else if (n == 'S' && !in_class) {
        out += "[^\\s\\x{85}]";
      } else {
        out += c;
        out += n;
      }
      ++i;
      continue;
    }
    if (c == '[' && !in_class) {
      in_class = true;
      out += c;
      // A ']' right after '[' or '[^' is a literal.
      if (i + 1 < p.size() && p[i + 1] == '^') out += p[++i];
      if (i + 1 < p.size() && p[i + 1] == ']') out += p[++i];
      continue;
    }
    if (c == ']' && in_class) in_class = false;
    out += c;
  }
  return out;
}

Regex::Regex(const std::string& pattern) : pattern_(pattern), impl_(std::make_unique<Impl>()) {
  std::string rewritten = rewrite_whitespace_classes(pattern);
  int error = 0;
  PCRE2_SIZE offset = 0;
  impl_->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(rewritten.data()), rewritten.size(),
                              PCRE2_UTF | PCRE2_UCP | PCRE2_NO_UTF_CHECK, &error, &offset, nullptr);
  if (!impl_->code) {
    PCRE2_UCHAR message[256];
    pcre2_get_error_message(error, message, sizeof(message));
    fail("cannot compile regex \"{}\" at offset {}: {}", pattern, offset, reinterpret_cast<char*>(message));
  }
  impl_->jit = pcre2_jit_compile(impl_->code, PCRE2_JIT_COMPLETE) == 0;
  impl_->data = pcre2_match_data_create_from_pattern(impl_->code, nullptr);
}

Regex::~Regex() {
  if (impl_) {
    if (impl_->data) pcre2_match_data_free(impl_->data);
    if (impl_->code) pcre2_code_free(impl_->code);
  }
}

bool Regex::find(std::string_view text, size_t start, size_t& begin, size_t& end) const {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  auto subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  int rc = impl_->jit ? pcre2_jit_match(impl_->code, subject, text.size(), start, 0, impl_->data, nullptr)
                      : pcre2_match(impl_->code, subject, text.size(), start, PCRE2_NO_UTF_CHECK, impl_->data, nullptr);
  if (rc == PCRE2_ERROR_NOMATCH) return false;
  RAD_CHECK(rc >= 0, "regex \"{}\" failed to match (PCRE2 error {})", pattern_, rc);
  PCRE2_SIZE* ov = pcre2_get_ovector_pointer(impl_->data);
  begin = ov[0];
  end = ov[1];
  return true;
}

std::vector<std::pair<size_t, size_t>> Regex::find_all(std::string_view text) const {
  std::vector<std::pair<size_t, size_t>> out;
  for_each_match(text, [&](size_t b, size_t e) { out.emplace_back(b, e); });
  return out;
}

std::string regex_escape(std::string_view literal) {
  std::string out;
  for (char c : literal) {
    if (std::string_view("\\^$.|?*+()[]{}-/#&~ ").find(c) != std::string_view::npos) out += '\\';
    out += c;
  }
  return out;
}

}  // namespace rad
