#include "rad/train/token_seq.h"

#include <algorithm>

#include "rad/core/error.h"

namespace rad {

TokenSeq::TokenSeq(std::vector<int32_t> tokens) {
  auto owned = std::make_shared<std::vector<int32_t>>(std::move(tokens));
  if (owned->empty()) return;
  pieces_.push_back({owned->data(), owned->size(), 4, owned});
  begin_.push_back(0);
  total_ = owned->size();
}

TokenSeq TokenSeq::concat(std::vector<Piece> pieces) {
  TokenSeq s;
  for (auto& p : pieces) {
    RAD_CHECK(p.bytes == 2 || p.bytes == 4, "token sequence piece of {} bytes per id (expected 2 or 4)", p.bytes);
    if (p.size == 0) continue;
    s.begin_.push_back(s.total_);
    s.total_ += p.size;
    s.pieces_.push_back(std::move(p));
  }
  return s;
}

int64_t TokenSeq::operator[](size_t i) const {
  int64_t v;
  copy(i, 1, &v);
  return v;
}

void TokenSeq::copy(size_t start, size_t n, int64_t* out) const {
  RAD_CHECK(start <= total_ && n <= total_ - start, "token range [{}, {}) is outside the sequence of {} tokens", start,
            start + n, total_);
  if (n == 0) return;
  size_t k = std::upper_bound(begin_.begin(), begin_.end(), start) - begin_.begin() - 1;
  while (n > 0) {
    const Piece& p = pieces_[k];
    size_t off = start - begin_[k];
    size_t take = std::min(n, p.size - off);
    if (p.bytes == 2) {
      const uint16_t* d = static_cast<const uint16_t*>(p.data) + off;
      for (size_t i = 0; i < take; ++i) out[i] = d[i];
    } else {
      // Owned pieces hold int32, mapped ones uint32; ids are below 2^31 either way.
      const uint32_t* d = static_cast<const uint32_t*>(p.data) + off;
      for (size_t i = 0; i < take; ++i) out[i] = static_cast<int64_t>(d[i]);
    }
    out += take;
    start += take;
    n -= take;
    ++k;
  }
}

std::vector<int32_t> TokenSeq::to_vector() const {
  std::vector<int64_t> all(total_);
  copy(0, total_, all.data());
  return std::vector<int32_t>(all.begin(), all.end());
}

}  // namespace rad
