#include "rad/io/gguf_dequant.h"

#include <cstring>

#include "rad/core/error.h"
#include "rad/core/half_float.h"

namespace rad::io {

namespace {

uint16_t load_u16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
float load_half(const uint8_t* p) { return f16_to_f32(load_u16(p)); }

void dequant_q8_0(const uint8_t* b, float* y) {
  const float d = load_half(b);
  const int8_t* q = reinterpret_cast<const int8_t*>(b + 2);
  for (int i = 0; i < 32; ++i) y[i] = d * q[i];
}

void dequant_q4_0(const uint8_t* b, float* y) {
  const float d = load_half(b);
  const uint8_t* q = b + 2;
  for (int j = 0; j < 16; ++j) {
    y[j] = d * (static_cast<int>(q[j] & 0x0f) - 8);
    y[j + 16] = d * (static_cast<int>(q[j] >> 4) - 8);
  }
}

void dequant_q4_1(const uint8_t* b, float* y) {
  const float d = load_half(b), m = load_half(b + 2);
  const uint8_t* q = b + 4;
  for (int j = 0; j < 16; ++j) {
    y[j] = d * (q[j] & 0x0f) + m;
    y[j + 16] = d * (q[j] >> 4) + m;
  }
}

// Q5_0: value j takes its low 4 bits from byte j (j < 16: low nibble; else byte j - 16's high nibble)
// and its fifth bit from bit j of the little-endian 32-bit qh.
void dequant_q5_0(const uint8_t* b, float* y) {
  const float d = load_half(b);
  const uint32_t qh = static_cast<uint32_t>(b[2]) | (static_cast<uint32_t>(b[3]) << 8) |
                      (static_cast<uint32_t>(b[4]) << 16) | (static_cast<uint32_t>(b[5]) << 24);
  const uint8_t* q = b + 6;
  for (int j = 0; j < 16; ++j) {
    y[j] = d * (static_cast<int>((q[j] & 0x0f) | (((qh >> j) & 1) << 4)) - 16);
    y[j + 16] = d * (static_cast<int>((q[j] >> 4) | (((qh >> (j + 16)) & 1) << 4)) - 16);
  }
}

// Q4_K packs 8 six-bit scales and 8 six-bit mins into 12 bytes: sub-blocks 0-3 keep theirs in the
// low 6 bits of bytes 0-3 (scales) and 4-7 (mins); sub-blocks 4-7 take their low 4 bits from the
// nibbles of bytes 8-11 and their top 2 bits from the top bits of bytes 0-3 (scales) / 4-7 (mins).
void q4k_scale_min(int s, const uint8_t* sc, int* scale, int* min) {
  if (s < 4) {
    *scale = sc[s] & 63;
    *min = sc[s + 4] & 63;
  } else {
    *scale = (sc[s + 4] & 0x0f) | ((sc[s - 4] >> 6) << 4);
    *min = (sc[s + 4] >> 4) | ((sc[s] >> 6) << 4);
  }
}

void dequant_q4_k(const uint8_t* b, float* y) {
  const float d = load_half(b), dmin = load_half(b + 2);
  const uint8_t* scales = b + 4;
  const uint8_t* q = b + 16;
  for (int pair = 0; pair < 4; ++pair) {  // 4 runs of 32 bytes, 64 values each
    int sc0, m0, sc1, m1;
    q4k_scale_min(2 * pair, scales, &sc0, &m0);
    q4k_scale_min(2 * pair + 1, scales, &sc1, &m1);
    const float d0 = d * sc0, mm0 = dmin * m0, d1 = d * sc1, mm1 = dmin * m1;
    const uint8_t* qq = q + 32 * pair;
    float* yy = y + 64 * pair;
    for (int l = 0; l < 32; ++l) {
      yy[l] = d0 * (qq[l] & 0x0f) - mm0;
      yy[l + 32] = d1 * (qq[l] >> 4) - mm1;
    }
  }
}

void dequant_q6_k(const uint8_t* b, float* y) {
  const uint8_t* ql = b;
  const uint8_t* qh = b + 128;
  const int8_t* sc = reinterpret_cast<const int8_t*>(b + 192);
  const float d = load_half(b + 208);
  // Two halves of 128 values; in each, value l + 32k (k = 0..3) takes its low 4 bits from
  // ql[l] / ql[l + 32] (low nibble for k = 0, 1; high nibble for k = 2, 3) and its top 2 bits from
  // bits 2k..2k+1 of qh[l]; its scale is sc[(l + 32k) / 16].
  for (int half = 0; half < 2; ++half) {
    const uint8_t* lo = ql + 64 * half;
    const uint8_t* hi = qh + 32 * half;
    const int8_t* s = sc + 8 * half;
    float* yy = y + 128 * half;
    for (int l = 0; l < 32; ++l) {
      const int q0 = ((lo[l] & 0x0f) | (((hi[l] >> 0) & 3) << 4)) - 32;
      const int q1 = ((lo[l + 32] & 0x0f) | (((hi[l] >> 2) & 3) << 4)) - 32;
      const int q2 = ((lo[l] >> 4) | (((hi[l] >> 4) & 3) << 4)) - 32;
      const int q3 = ((lo[l + 32] >> 4) | (((hi[l] >> 6) & 3) << 4)) - 32;
      yy[l] = d * s[l / 16] * q0;
      yy[l + 32] = d * s[2 + l / 16] * q1;
      yy[l + 64] = d * s[4 + l / 16] * q2;
      yy[l + 96] = d * s[6 + l / 16] * q3;
    }
  }
}

}  // namespace

bool ggml_can_dequantize(GgmlType type) {
  switch (type) {
    case GgmlType::kF32:
    case GgmlType::kF16:
    case GgmlType::kBF16:
    case GgmlType::kQ8_0:
    case GgmlType::kQ4_0:
    case GgmlType::kQ4_1:
    case GgmlType::kQ5_0:
    case GgmlType::kQ4_K:
    case GgmlType::kQ6_K:
      return true;
    default:
      return false;
  }
}

void dequantize(GgmlType type, const uint8_t* src, uint64_t n, float* dst) {
  const GgmlTypeInfo* info = ggml_type_info(static_cast<uint32_t>(type));
  RAD_CHECK(info != nullptr && ggml_can_dequantize(type),
            "cannot dequantize ggml type {} (supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q4_K, Q6_K)",
            ggml_type_name(static_cast<uint32_t>(type)));
  RAD_CHECK(n % info->block_elems == 0, "dequantize {}: {} values is not a whole number of {}-value blocks", info->name,
            n, info->block_elems);
  const uint64_t blocks = n / info->block_elems;
  // An empty tensor: nothing to write, and `dst` may then be null (an empty vector's data()), which
  // memcpy must not be given even for 0 bytes (UBSan, fuzz target gguf).
  if (n == 0) return;
  switch (type) {
    case GgmlType::kF32:
      std::memcpy(dst, src, n * 4);
      return;
    case GgmlType::kF16:
      for (uint64_t i = 0; i < n; ++i) dst[i] = f16_to_f32(load_u16(src + 2 * i));
      return;
    case GgmlType::kBF16:
      for (uint64_t i = 0; i < n; ++i) dst[i] = bf16_to_f32(load_u16(src + 2 * i));
      return;
    default:
      break;
  }
  void (*block_fn)(const uint8_t*, float*) = nullptr;
  switch (type) {
    case GgmlType::kQ8_0: block_fn = dequant_q8_0; break;
    case GgmlType::kQ4_0: block_fn = dequant_q4_0; break;
    case GgmlType::kQ4_1: block_fn = dequant_q4_1; break;
    case GgmlType::kQ5_0: block_fn = dequant_q5_0; break;
    case GgmlType::kQ4_K: block_fn = dequant_q4_k; break;
    case GgmlType::kQ6_K: block_fn = dequant_q6_k; break;
    default: break;
  }
  for (uint64_t i = 0; i < blocks; ++i) block_fn(src + i * info->block_bytes, dst + i * info->block_elems);
}

}  // namespace rad::io
