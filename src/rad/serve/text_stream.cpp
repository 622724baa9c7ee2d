#include "rad/serve/text_stream.h"

#include <algorithm>

namespace rad::serve {

TextStream::TextStream(const Tokenizer& tokenizer, std::vector<int64_t> context, std::vector<std::string> stops)
    : tok_(tokenizer), context_(std::move(context)), stops_(std::move(stops)) {
  stops_.erase(std::remove(stops_.begin(), stops_.end(), std::string()), stops_.end());
  prefix_ = tok_.decode(context_, /*skip_special_tokens=*/true);
}

std::string TextStream::decoded() const {
  std::vector<int64_t> all = context_;
  all.insert(all.end(), reply_.begin(), reply_.end());
  std::string full = tok_.decode(all, /*skip_special_tokens=*/true);
  if (full.compare(0, prefix_.size(), prefix_) == 0) return full.substr(prefix_.size());
  return tok_.decode(reply_, /*skip_special_tokens=*/true);
}

std::string TextStream::push(int64_t token) {
  if (stopped_) return "";
  reply_.push_back(token);
  const std::string text = decoded();
  // The earliest stop string ends the reply (the stop string itself is not part of it).
  size_t cut = std::string::npos;
  for (const auto& s : stops_) cut = std::min(cut, text.find(s));
  size_t safe;
  if (cut != std::string::npos) {
    stopped_ = true;
    safe = cut;
  } else {
    // Hold back the longest tail that is a proper prefix of a stop string...
    size_t hold = 0;
    for (const auto& s : stops_)
      for (size_t n = std::min(s.size() - 1, text.size()); n > hold; --n)
        if (text.compare(text.size() - n, n, s, 0, n) == 0) {
          hold = n;
          break;
        }
    // ...and a trailing U+FFFD: the decoder's stand-in for a UTF-8 sequence still incomplete.
    if (text.size() >= 3 && text.compare(text.size() - 3, 3, "\xEF\xBF\xBD") == 0) hold = std::max<size_t>(hold, 3);
    safe = text.size() - hold;
  }
  // Released text is final; were a later decode to disagree with it (it should not), keep it.
  if (safe <= released_.size() || text.compare(0, released_.size(), released_) != 0) return "";
  std::string delta = text.substr(released_.size(), safe - released_.size());
  released_ += delta;
  return delta;
}

std::string TextStream::finish() {
  if (stopped_) return "";
  const std::string text = decoded();
  if (text.size() <= released_.size() || text.compare(0, released_.size(), released_) != 0) return "";
  std::string delta = text.substr(released_.size());
  released_ += delta;
  return delta;
}

}  // namespace rad::serve
