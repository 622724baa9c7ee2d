#include "rad/io/gguf_quantize.h"

#include <algorithm>
#include <cmath>

#include "rad/core/error.h"
#include "rad/core/half_float.h"

namespace rad::io {

namespace {

void store_half(uint8_t* p, float v) {
  const uint16_t h = f32_to_f16(v);
  p[0] = static_cast<uint8_t>(h & 0xff);
  p[1] = static_cast<uint8_t>(h >> 8);
}

void quantize_q8_0(const float* x, uint8_t* b) {
  float amax = 0;
  for (int i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(x[i]));
  const float d = amax / 127.0f, id = d != 0 ? 1.0f / d : 0.0f;
  store_half(b, d);
  int8_t* q = reinterpret_cast<int8_t*>(b + 2);
  for (int i = 0; i < 32; ++i) q[i] = static_cast<int8_t>(std::lround(x[i] * id));
}

void quantize_q4_0(const float* x, uint8_t* b) {
  float amax = 0, max = 0;
  for (int i = 0; i < 32; ++i)
    if (std::fabs(x[i]) > amax) {
      amax = std::fabs(x[i]);
      max = x[i];
    }
  const float d = max / -8.0f, id = d != 0 ? 1.0f / d : 0.0f;
  store_half(b, d);
  uint8_t* q = b + 2;
  auto nibble = [&](float v) { return static_cast<uint8_t>(std::min(15, static_cast<int>(std::floor(v * id + 8.5f)))); };
  for (int j = 0; j < 16; ++j) q[j] = static_cast<uint8_t>(nibble(x[j]) | (nibble(x[j + 16]) << 4));
}

}  // namespace

bool ggml_can_quantize(GgmlType type) { return type == GgmlType::kQ8_0 || type == GgmlType::kQ4_0; }

void quantize(GgmlType type, const float* src, uint64_t n, uint8_t* dst) {
  RAD_CHECK(ggml_can_quantize(type), "quantize: cannot write {} (supported: Q8_0, Q4_0)",
            ggml_type_name(static_cast<uint32_t>(type)));
  RAD_CHECK(n % 32 == 0, "quantize: {} values are not whole blocks of 32 ({})", n,
            ggml_type_name(static_cast<uint32_t>(type)));
  for (uint64_t i = 0; i < n; ++i)
    RAD_CHECK(std::isfinite(src[i]), "quantize: value {} is {} (only finite values can be quantized)", i, src[i]);
  const uint64_t bytes = ggml_type_info(static_cast<uint32_t>(type))->block_bytes;
  for (uint64_t i = 0; i < n / 32; ++i) {
    if (type == GgmlType::kQ8_0) quantize_q8_0(src + 32 * i, dst + bytes * i);
    else quantize_q4_0(src + 32 * i, dst + bytes * i);
  }
}

}  // namespace rad::io
