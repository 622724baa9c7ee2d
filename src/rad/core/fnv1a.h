// FNV-1a, 64 bit: the content hash of models (heads/model_hash.h) and of cached teacher inputs
// (distill/teacher_cache.h). Not cryptographic; it detects mix-ups, not tampering.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace rad {

struct Fnv1a {
  uint64_t h = 1469598103934665603ull;
  void add(const void* data, size_t n) {
    const auto* p = static_cast<const uint8_t*>(data);
    for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
  }
  void add(const std::string& s) { add(s.data(), s.size()); }
};

}  // namespace rad
