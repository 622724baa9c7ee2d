// Matrix products with weights in ggml's Q4_K and Q6_K super-blocks, kept as stored (issue 30). Hand-
// written for the same reason as kernels_blocks.cpp: no Debian package has integer dot products over
// ggml's layouts. Each super-block of a weight row (256 values) is unpacked into
// 32-value sub-blocks of int8 values with float scales (the two halves of a sub-block may differ:
// Q6_K has a scale per 16 values) and a float min (Q4_K: x = d * sc * q - dmin * m), then paired with
// the activations' 8-bit blocks of 32 (kernels_blocks.h):
//   lanes l = 0..7: acc_l = fma(scale_half(l) * dx, sum_{k=4l..4l+3} q_k * xq_k, acc_l)
//   mins:           m_acc = fma(min * dx, sum_k xq_k, m_acc)
//   y = hsum(acc) - m_acc (+ bias)
// over the sub-blocks in order. The integer sums are exact; the float steps are the same in the
// portable and AVX2 paths (one scale unpacker; value unpackers that give the same bytes), so both give
// the same bits, and a row the same bits whatever the number of tokens, rows or threads.
#include <cmath>
#include <cstring>

#include "rad/core/half_float.h"
#include "rad/runtime/kernels_blocks.h"
#include "rad/runtime/simd.h"

namespace rad::runtime::detail {

// A named namespace, not an anonymous one: in unity builds kernels_blocks.cpp's helpers (tile, ...)
// share this translation unit.
namespace subblock {

constexpr int kSub = 32;  // values per sub-block (and per activation block)

// One super-block, unpacked.
struct Unpacked {
  alignas(32) int8_t q[256];
  float lo[8], hi[8];  // scale of values 0-15 / 16-31 of each sub-block
  float mn[8];         // what each sub-block subtracts (times its activation sum); 0 but for Q4_K
  int subs = 0;
};

inline float half_at(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return f16_to_f32(h);
}

// Q4_K's 6-bit scale and min of sub-block s (the 12-byte packing of rad/io/gguf_dequant.cpp).
inline void q4k_scale_min(int s, const uint8_t* sc, int* scale, int* min) {
  if (s < 4) {
    *scale = sc[s] & 63;
    *min = sc[s + 4] & 63;
  } else {
    *scale = (sc[s + 4] & 0x0f) | ((sc[s - 4] >> 6) << 4);
    *min = (sc[s + 4] >> 4) | ((sc[s] >> 6) << 4);
  }
}

// The scales and mins of a super-block (everything but the values).
inline void unpack_scales(DType t, const uint8_t* b, Unpacked* u) {
  if (t == DType::kQ4_K) {
    u->subs = 8;
    const float d = half_at(b), dmin = half_at(b + 2);
    for (int s = 0; s < 8; ++s) {
      int sc, m;
      q4k_scale_min(s, b + 4, &sc, &m);
      u->lo[s] = u->hi[s] = d * static_cast<float>(sc);
      u->mn[s] = dmin * static_cast<float>(m);
    }
  } else {  // Q6_K: int8 scales per 16 values at byte 192, fp16 d at 208
    u->subs = 8;
    const float d = half_at(b + 208);
    const int8_t* sc = reinterpret_cast<const int8_t*>(b + 192);
    for (int s = 0; s < 8; ++s) {
      u->lo[s] = d * static_cast<float>(sc[2 * s]);
      u->hi[s] = d * static_cast<float>(sc[2 * s + 1]);
      u->mn[s] = 0;
    }
  }
}

// The values, portable: Q4_K q (0..15; its min is separate); Q6_K q - 32.
inline void unpack_values_portable(DType t, const uint8_t* b, Unpacked* u) {
  if (t == DType::kQ4_K) {
    const uint8_t* q = b + 16;
    for (int pair = 0; pair < 4; ++pair)
      for (int l = 0; l < 32; ++l) {
        u->q[64 * pair + l] = static_cast<int8_t>(q[32 * pair + l] & 0x0f);
        u->q[64 * pair + 32 + l] = static_cast<int8_t>(q[32 * pair + l] >> 4);
      }
  } else {
    for (int half = 0; half < 2; ++half) {
      const uint8_t* lo = b + 64 * half;
      const uint8_t* hi = b + 128 + 32 * half;
      int8_t* o = u->q + 128 * half;
      for (int l = 0; l < 32; ++l) {
        o[l] = static_cast<int8_t>(((lo[l] & 0x0f) | (((hi[l] >> 0) & 3) << 4)) - 32);
        o[l + 32] = static_cast<int8_t>(((lo[l + 32] & 0x0f) | (((hi[l] >> 2) & 3) << 4)) - 32);
        o[l + 64] = static_cast<int8_t>(((lo[l] >> 4) | (((hi[l] >> 4) & 3) << 4)) - 32);
        o[l + 96] = static_cast<int8_t>(((lo[l + 32] >> 4) | (((hi[l] >> 6) & 3) << 4)) - 32);
      }
    }
  }
}


void matmul_subblocks_portable(const Mat& W, const float* bias, const QuantizedActivations& xq, float* y, int64_t ldy,
                               int64_t r0, int64_t r1, bool accumulate) {
  const int64_t K = W.cols, nsb = K / dtype_block_elems(W.dtype), nb = K / kSub;
  const size_t bb = dtype_block_bytes(W.dtype), rb = row_bytes(W.dtype, K);
  Unpacked u;
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* row = W.data + static_cast<size_t>(r) * rb;
    for (int64_t t = 0; t < xq.T; ++t) {
      float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0}, macc = 0;
      for (int64_t sb = 0; sb < nsb; ++sb) {
        unpack_scales(W.dtype, row + sb * bb, &u);
        unpack_values_portable(W.dtype, row + sb * bb, &u);
        for (int s = 0; s < u.subs; ++s) {
          const int64_t b = sb * u.subs + s;
          const int8_t* x = xq.q.data() + t * K + b * kSub;
          const float dx = xq.d[t * nb + b];
          const float slo = u.lo[s] * dx, shi = u.hi[s] * dx;
          for (int l = 0; l < 8; ++l) {
            int32_t sum = 0;
            for (int k = 4 * l; k < 4 * l + 4; ++k) sum += static_cast<int32_t>(u.q[s * kSub + k]) * x[k];
            acc[l] = std::fma(l < 4 ? slo : shi, static_cast<float>(sum), acc[l]);
          }
          macc = std::fma(u.mn[s] * dx, static_cast<float>(xq.sum[t * nb + b]), macc);
        }
      }
      float v = simd::hsum_lanes(acc) - macc;
      if (bias != nullptr) v += bias[r];
      float& out = y[t * ldy + r];
      out = accumulate ? out + v : v;
    }
  }
}

#if RAD_HAVE_X86

// Q6_K's top 2 bits of each byte's value: bits shift..shift+1 of qh (16-bit shifts; the mask keeps each
// byte's own bits), moved to bits 4-5.
RAD_AVX2 inline __m256i q6k_top(__m256i hi, int shift, __m256i two_bits) {
  return _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hi, shift), two_bits), 4);
}

// The values with AVX2 (the same bytes as unpack_values_portable).
RAD_AVX2 inline void unpack_values_avx2(DType t, const uint8_t* b, Unpacked* u) {
  const __m256i low4 = _mm256_set1_epi8(0x0f);
  if (t == DType::kQ4_K) {
    for (int pair = 0; pair < 4; ++pair) {
      const __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 16 + 32 * pair));
      _mm256_store_si256(reinterpret_cast<__m256i*>(u->q + 64 * pair), _mm256_and_si256(raw, low4));
      _mm256_store_si256(reinterpret_cast<__m256i*>(u->q + 64 * pair + 32),
                         _mm256_and_si256(_mm256_srli_epi16(raw, 4), low4));
    }
  } else {
    const __m256i two = _mm256_set1_epi8(3), off = _mm256_set1_epi8(32);
    for (int half = 0; half < 2; ++half) {
      const __m256i lo0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 64 * half));
      const __m256i lo1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 64 * half + 32));
      const __m256i hi = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 128 + 32 * half));
      int8_t* o = u->q + 128 * half;
      const __m256i v0 = _mm256_or_si256(_mm256_and_si256(lo0, low4), q6k_top(hi, 0, two));
      const __m256i v1 = _mm256_or_si256(_mm256_and_si256(lo1, low4), q6k_top(hi, 2, two));
      const __m256i v2 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(lo0, 4), low4), q6k_top(hi, 4, two));
      const __m256i v3 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(lo1, 4), low4), q6k_top(hi, 6, two));
      _mm256_store_si256(reinterpret_cast<__m256i*>(o), _mm256_sub_epi8(v0, off));
      _mm256_store_si256(reinterpret_cast<__m256i*>(o + 32), _mm256_sub_epi8(v1, off));
      _mm256_store_si256(reinterpret_cast<__m256i*>(o + 64), _mm256_sub_epi8(v2, off));
      _mm256_store_si256(reinterpret_cast<__m256i*>(o + 96), _mm256_sub_epi8(v3, off));
    }
  }
}

// 8 int32 lanes, lane l = sum of w[k] * x[k] for k in 4l..4l+3 (|w| <= 32, so maddubs cannot saturate).
RAD_AVX2 inline __m256i sub_dot(__m256i w, __m256i x) {
  const __m256i p16 = _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w));
  return _mm256_madd_epi16(p16, _mm256_set1_epi16(1));
}

// R rows x TT tokens from row r, token t.
template <int R, int TT>
RAD_AVX2 inline void tile(const Mat& W, const float* bias, const QuantizedActivations& xq, float* y, int64_t ldy,
                          int64_t r, int64_t t, bool accumulate) {
  const int64_t K = W.cols, nsb = K / dtype_block_elems(W.dtype), nb = K / kSub;
  const size_t bb = dtype_block_bytes(W.dtype), rb = row_bytes(W.dtype, K);
  __m256 acc[R][TT];
  float macc[R][TT];
  for (int i = 0; i < R; ++i)
    for (int j = 0; j < TT; ++j) {
      acc[i][j] = _mm256_setzero_ps();
      macc[i][j] = 0;
    }
  Unpacked u[R];
  for (int64_t sb = 0; sb < nsb; ++sb) {
    for (int i = 0; i < R; ++i) {
      const uint8_t* block = W.data + static_cast<size_t>(r + i) * rb + sb * bb;
      unpack_scales(W.dtype, block, &u[i]);
      unpack_values_avx2(W.dtype, block, &u[i]);
    }
    const int subs = u[0].subs;
    const bool mins = W.dtype == DType::kQ4_K;  // Q6_K has none: its m_acc stays 0, as the portable path's
    for (int s = 0; s < subs; ++s) {
      const int64_t b = sb * subs + s;
      __m256i w[R];
      __m256 sv[R];
      for (int i = 0; i < R; ++i) {
        w[i] = _mm256_load_si256(reinterpret_cast<const __m256i*>(u[i].q + s * kSub));
        sv[i] = _mm256_set_m128(_mm_set1_ps(u[i].hi[s]), _mm_set1_ps(u[i].lo[s]));
      }
      for (int j = 0; j < TT; ++j) {
        const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq.q.data() + (t + j) * K + b * kSub));
        const float dx = xq.d[(t + j) * nb + b];
        const float xs = mins ? static_cast<float>(xq.sum[(t + j) * nb + b]) : 0.0f;
        const __m256 dxv = _mm256_set1_ps(dx);
        for (int i = 0; i < R; ++i) {
          acc[i][j] = _mm256_fmadd_ps(_mm256_mul_ps(sv[i], dxv), _mm256_cvtepi32_ps(sub_dot(w[i], x)), acc[i][j]);
          if (mins) macc[i][j] = std::fma(u[i].mn[s] * dx, xs, macc[i][j]);
        }
      }
    }
  }
  for (int i = 0; i < R; ++i)
    for (int j = 0; j < TT; ++j) {
      float v = simd::hsum(acc[i][j]) - macc[i][j];
      if (bias != nullptr) v += bias[r + i];
      float& out = y[(t + j) * ldy + r + i];
      out = accumulate ? out + v : v;
    }
}

RAD_AVX2 void matmul_subblocks_avx2(const Mat& W, const float* bias, const QuantizedActivations& xq, float* y,
                                    int64_t ldy, int64_t r0, int64_t r1, bool accumulate) {
  const int64_t T = xq.T;
  int64_t r = r0;
  if (T == 1) {
    for (; r < r1; ++r) tile<1, 1>(W, bias, xq, y, ldy, r, 0, accumulate);
    return;
  }
  // Prefill: 2 rows x 4 tokens a tile (each super-block unpacked once per 4 tokens), as Q8_0/Q4_0.
  for (; r + 2 <= r1; r += 2) {
    int64_t t = 0;
    for (; t + 4 <= T; t += 4) tile<2, 4>(W, bias, xq, y, ldy, r, t, accumulate);
    for (; t < T; ++t) tile<2, 1>(W, bias, xq, y, ldy, r, t, accumulate);
  }
  for (; r < r1; ++r)
    for (int64_t t = 0; t < T; ++t) tile<1, 1>(W, bias, xq, y, ldy, r, t, accumulate);
}

#endif

}  // namespace subblock

bool dtype_is_subblock(DType t) { return t == DType::kQ4_K || t == DType::kQ6_K; }

void matmul_subblocks(const Mat& W, const float* bias, const QuantizedActivations& xq, float* y, int64_t ldy,
                      int64_t r0, int64_t r1, bool accumulate, bool avx2) {
#if RAD_HAVE_X86
  if (avx2) return subblock::matmul_subblocks_avx2(W, bias, xq, y, ldy, r0, r1, accumulate);
#else
  (void)avx2;
#endif
  subblock::matmul_subblocks_portable(W, bias, xq, y, ldy, r0, r1, accumulate);
}

}  // namespace rad::runtime::detail
