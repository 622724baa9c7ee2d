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

// The x of largest |x| among n values, with its sign.
float signed_max(const float* x, int n) {
  float amax = 0, max = 0;
  for (int i = 0; i < n; ++i)
    if (std::fabs(x[i]) > amax) {
      amax = std::fabs(x[i]);
      max = x[i];
    }
  return max;
}

void quantize_q5_0(const float* x, uint8_t* b) {
  const float d = signed_max(x, 32) / -16.0f, id = d != 0 ? 1.0f / d : 0.0f;
  store_half(b, d);
  uint32_t qh = 0;
  uint8_t* q = b + 6;
  auto value = [&](float v) { return std::min(31, static_cast<int>(std::floor(v * id + 16.5f))); };
  for (int j = 0; j < 16; ++j) {
    const int lo = value(x[j]), hi = value(x[j + 16]);
    q[j] = static_cast<uint8_t>((lo & 0x0f) | ((hi & 0x0f) << 4));
    qh |= static_cast<uint32_t>((lo >> 4) & 1) << j;
    qh |= static_cast<uint32_t>((hi >> 4) & 1) << (j + 16);
  }
  for (int k = 0; k < 4; ++k) b[2 + k] = static_cast<uint8_t>(qh >> (8 * k));
}

int clamp_round(float v, int lo, int hi) { return std::clamp(static_cast<int>(std::lround(v)), lo, hi); }

void quantize_q4_k(const float* x, uint8_t* b) {
  float scale[8], min[8];
  for (int s = 0; s < 8; ++s) {
    const float* v = x + 32 * s;
    float lo = 0, hi = v[0];  // the min is subtracted (x = d * sc * q - dmin * m, m >= 0): lo <= 0
    for (int i = 0; i < 32; ++i) {
      lo = std::min(lo, v[i]);
      hi = std::max(hi, v[i]);
    }
    scale[s] = (hi - lo) / 15.0f;
    min[s] = -lo;
  }
  const float d = *std::max_element(scale, scale + 8) / 63.0f, dmin = *std::max_element(min, min + 8) / 63.0f;
  store_half(b, d);
  store_half(b + 2, dmin);
  // The stored (half) super-scales, so values are rounded against what dequantisation will use.
  const float dh = f16_to_f32(f32_to_f16(d)), mh = f16_to_f32(f32_to_f16(dmin));
  int sc[8], m[8];
  for (int s = 0; s < 8; ++s) {
    sc[s] = dh > 0 ? clamp_round(scale[s] / dh, 0, 63) : 0;
    m[s] = mh > 0 ? clamp_round(min[s] / mh, 0, 63) : 0;
  }
  uint8_t* packed = b + 4;  // 12 bytes: the layout q4k_scale_min reads (gguf_dequant.cpp)
  for (int s = 0; s < 4; ++s) {
    packed[s] = static_cast<uint8_t>(sc[s] | ((sc[s + 4] >> 4) << 6));
    packed[s + 4] = static_cast<uint8_t>(m[s] | ((m[s + 4] >> 4) << 6));
    packed[s + 8] = static_cast<uint8_t>((sc[s + 4] & 0x0f) | ((m[s + 4] & 0x0f) << 4));
  }
  uint8_t q[256];
  for (int s = 0; s < 8; ++s) {
    const float step = dh * sc[s], shift = mh * m[s];
    for (int i = 0; i < 32; ++i)
      q[32 * s + i] = static_cast<uint8_t>(step > 0 ? clamp_round((x[32 * s + i] + shift) / step, 0, 15) : 0);
  }
  for (int pair = 0; pair < 4; ++pair)
    for (int l = 0; l < 32; ++l)
      b[16 + 32 * pair + l] = static_cast<uint8_t>(q[64 * pair + l] | (q[64 * pair + 32 + l] << 4));
}

void quantize_q6_k(const float* x, uint8_t* b) {
  float scale[16];
  for (int s = 0; s < 16; ++s) scale[s] = signed_max(x + 16 * s, 16) / -32.0f;
  const float d = signed_max(scale, 16) / -128.0f;
  store_half(b + 208, d);
  const float dh = f16_to_f32(f32_to_f16(d));
  int8_t* sc = reinterpret_cast<int8_t*>(b + 192);
  uint8_t q[256];
  for (int s = 0; s < 16; ++s) {
    sc[s] = static_cast<int8_t>(dh != 0 ? clamp_round(scale[s] / dh, -128, 127) : 0);
    const float step = dh * sc[s];
    for (int i = 0; i < 16; ++i)
      q[16 * s + i] = static_cast<uint8_t>((step != 0 ? clamp_round(x[16 * s + i] / step, -32, 31) : 0) + 32);
  }
  for (int half = 0; half < 2; ++half)
    for (int l = 0; l < 32; ++l) {
      const uint8_t* v = q + 128 * half;
      b[64 * half + l] = static_cast<uint8_t>((v[l] & 0x0f) | ((v[l + 64] & 0x0f) << 4));
      b[64 * half + l + 32] = static_cast<uint8_t>((v[l + 32] & 0x0f) | ((v[l + 96] & 0x0f) << 4));
      b[128 + 32 * half + l] =
          static_cast<uint8_t>((v[l] >> 4) | ((v[l + 32] >> 4) << 2) | ((v[l + 64] >> 4) << 4) | ((v[l + 96] >> 4) << 6));
    }
}

}  // namespace

bool ggml_can_quantize(GgmlType type) {
  return type == GgmlType::kQ8_0 || type == GgmlType::kQ4_0 || type == GgmlType::kQ5_0 || type == GgmlType::kQ4_K ||
         type == GgmlType::kQ6_K;
}

void quantize(GgmlType type, const float* src, uint64_t n, uint8_t* dst) {
  RAD_CHECK(ggml_can_quantize(type), "quantize: cannot write {} (supported: Q8_0, Q4_0, Q5_0, Q4_K, Q6_K)",
            ggml_type_name(static_cast<uint32_t>(type)));
  const GgmlTypeInfo* info = ggml_type_info(static_cast<uint32_t>(type));
  RAD_CHECK(n % info->block_elems == 0, "quantize: {} values are not whole blocks of {} ({})", n, info->block_elems,
            info->name);
  for (uint64_t i = 0; i < n; ++i)
    RAD_CHECK(std::isfinite(src[i]), "quantize: value {} is {} (only finite values can be quantized)", i, src[i]);
  void (*block_fn)(const float*, uint8_t*) = type == GgmlType::kQ8_0   ? quantize_q8_0
                                             : type == GgmlType::kQ4_0 ? quantize_q4_0
                                             : type == GgmlType::kQ5_0 ? quantize_q5_0
                                             : type == GgmlType::kQ4_K ? quantize_q4_k
                                                                       : quantize_q6_k;
  for (uint64_t i = 0; i < n / info->block_elems; ++i)
    block_fn(src + info->block_elems * i, dst + info->block_bytes * i);
}

}  // namespace rad::io
