// Hand-written because no Debian package offers int8 block dot products over ggml's layouts
// (OpenBLAS has no int8 GEMM with per-block scales); the layouts are in rad/io/gguf_dequant.h.
#include "rad/runtime/kernels_blocks.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "rad/core/half_float.h"
#include "rad/runtime/simd.h"


namespace rad::runtime::detail {

namespace {

constexpr int64_t kBlock = 32;

inline float block_scale(const uint8_t* b) {
  uint16_t h;
  std::memcpy(&h, b, 2);
  return f16_to_f32(h);
}

// The 32 int8 weights of a block (Q4_0: nibble - 8, value j in the low nibble of byte j, value j + 16
// in its high nibble; Q5_0: the same nibbles at byte 6 with bit j of the 32-bit qh at byte 2 as their
// fifth bit, - 16).
inline void block_values(DType t, const uint8_t* b, int8_t* w) {
  if (t == DType::kQ8_0) {
    std::memcpy(w, b + 2, 32);
  } else if (t == DType::kQ5_0) {
    const uint32_t qh = static_cast<uint32_t>(b[2]) | (static_cast<uint32_t>(b[3]) << 8) |
                        (static_cast<uint32_t>(b[4]) << 16) | (static_cast<uint32_t>(b[5]) << 24);
    for (int j = 0; j < 16; ++j) {
      w[j] = static_cast<int8_t>(((b[6 + j] & 0x0f) | (((qh >> j) & 1) << 4)) - 16);
      w[j + 16] = static_cast<int8_t>(((b[6 + j] >> 4) | (((qh >> (j + 16)) & 1) << 4)) - 16);
    }
  } else {
    for (int j = 0; j < 16; ++j) {
      w[j] = static_cast<int8_t>((b[2 + j] & 0x0f) - 8);
      w[j + 16] = static_cast<int8_t>((b[2 + j] >> 4) - 8);
    }
  }
}


void matmul_blocks_portable(const Mat& W, const float* bias, const int8_t* xq, const float* xd, int64_t T, float* y,
                            int64_t ldy, int64_t r0, int64_t r1, bool accumulate) {
  const int64_t K = W.cols, nb = K / kBlock;
  const size_t bb = dtype_block_bytes(W.dtype), rb = row_bytes(W.dtype, K);
  int8_t w[32];
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* row = W.data + static_cast<size_t>(r) * rb;
    for (int64_t t = 0; t < T; ++t) {
      float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      for (int64_t b = 0; b < nb; ++b) {
        block_values(W.dtype, row + b * bb, w);
        const int8_t* x = xq + t * K + b * kBlock;
        const float s = block_scale(row + b * bb) * xd[t * nb + b];
        for (int j = 0; j < 8; ++j) {
          int32_t sum = 0;
          for (int k = 4 * j; k < 4 * j + 4; ++k) sum += static_cast<int32_t>(w[k]) * x[k];
          acc[j] = std::fma(s, static_cast<float>(sum), acc[j]);
        }
      }
      float v = simd::hsum_lanes(acc);
      if (bias != nullptr) v += bias[r];
      float& out = y[t * ldy + r];
      out = accumulate ? out + v : v;
    }
  }
}

#if RAD_HAVE_X86

template <DType D>
RAD_AVX2 inline __m256i load_block(const uint8_t* b) {
  if constexpr (D == DType::kQ8_0) {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 2));
  } else if constexpr (D == DType::kQ5_0) {
    // The fifth bits: byte j takes bit j of qh (each qh byte spread over 8 bytes, bit j % 8 tested).
    uint32_t qh;
    std::memcpy(&qh, b + 2, 4);
    const __m256i spread = _mm256_shuffle_epi8(
        _mm256_set1_epi32(static_cast<int>(qh)),
        _mm256_setr_epi64x(0x0000000000000000, 0x0101010101010101, 0x0202020202020202, 0x0303030303030303));
    const __m256i bit = _mm256_set1_epi64x(static_cast<long long>(0x8040201008040201ULL));
    const __m256i fifth = _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit), _mm256_set1_epi8(16));
    const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 6));
    const __m128i m = _mm_set1_epi8(0x0f);
    const __m256i nib = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(raw, 4), m), _mm_and_si128(raw, m));
    return _mm256_sub_epi8(_mm256_or_si256(nib, fifth), _mm256_set1_epi8(16));
  } else {
    const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 2));
    const __m128i m = _mm_set1_epi8(0x0f);
    const __m128i lo = _mm_and_si128(raw, m), hi = _mm_and_si128(_mm_srli_epi16(raw, 4), m);
    return _mm256_sub_epi8(_mm256_set_m128i(hi, lo), _mm256_set1_epi8(8));
  }
}

// 8 int32 lanes, lane j = sum of w[k] * x[k] for k in 4j..4j+3. |w| <= 128 and |x| <= 127, so the
// int16 pair sums of maddubs (at most 2 * 128 * 127) never saturate.
// aw = |w| (sign_epi8(w, w)), computed once per weight block for all tokens.
RAD_AVX2 inline __m256i block_dot(__m256i w, __m256i aw, __m256i x) {
  const __m256i p16 = _mm256_maddubs_epi16(aw, _mm256_sign_epi8(x, w));
  return _mm256_madd_epi16(p16, _mm256_set1_epi16(1));
}

using simd::hsum;

// R rows x TT tokens from row r, token t; pf: the rows after these, prefetched while these are read.
template <DType D, int R, int TT>
RAD_AVX2 inline void tile(const Mat& W, const float* bias, const int8_t* xq, const float* xd, float* y, int64_t ldy,
                          int64_t r, int64_t t, bool accumulate, const uint8_t* pf) {
  const int64_t K = W.cols, nb = K / kBlock;
  constexpr size_t bb = D == DType::kQ8_0 ? 34 : D == DType::kQ5_0 ? 22 : 18;
  const size_t rb = static_cast<size_t>(nb) * bb;
  const uint8_t* rows[R];
  for (int i = 0; i < R; ++i) rows[i] = W.data + static_cast<size_t>(r + i) * rb;
  __m256 acc[R][TT];
  for (int i = 0; i < R; ++i)
    for (int j = 0; j < TT; ++j) acc[i][j] = _mm256_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    if (pf != nullptr)
      for (int i = 0; i < R; ++i) _mm_prefetch(reinterpret_cast<const char*>(pf + i * rb + b * bb), _MM_HINT_T0);
    __m256i w[R], aw[R];
    float ws[R];
    for (int i = 0; i < R; ++i) {
      w[i] = load_block<D>(rows[i] + b * bb);
      aw[i] = _mm256_sign_epi8(w[i], w[i]);
      ws[i] = _cvtsh_ss(*reinterpret_cast<const uint16_t*>(rows[i] + b * bb));
    }
    for (int j = 0; j < TT; ++j) {
      const __m256i x = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq + (t + j) * K + b * kBlock));
      const float xs = xd[(t + j) * nb + b];
      for (int i = 0; i < R; ++i)
        acc[i][j] = _mm256_fmadd_ps(_mm256_set1_ps(ws[i] * xs), _mm256_cvtepi32_ps(block_dot(w[i], aw[i], x)), acc[i][j]);
    }
  }
  for (int i = 0; i < R; ++i)
    for (int j = 0; j < TT; ++j) {
      float v = hsum(acc[i][j]);
      if (bias != nullptr) v += bias[r + i];
      float& out = y[(t + j) * ldy + r + i];
      out = accumulate ? out + v : v;
    }
}

template <DType D>
RAD_AVX2 void matmul_blocks_avx2(const Mat& W, const float* bias, const int8_t* xq, const float* xd, int64_t T,
                                 float* y, int64_t ldy, int64_t r0, int64_t r1, bool acc) {
  const size_t rb = row_bytes(D, W.cols);
  int64_t r = r0;
  if (T == 1) {
    // Decode: one row a pass, prefetching ahead (simd::kDecodeRowsAhead has the measurement).
    constexpr int64_t kAhead = simd::kDecodeRowsAhead;
    for (; r < r1; ++r) {
      const bool ahead = r + kAhead < W.rows;
      tile<D, 1, 1>(W, bias, xq, xd, y, ldy, r, 0, acc, ahead ? W.data + (r + kAhead) * rb : nullptr);
    }
    return;
  }
  // Prefill: 2 rows x 4 tokens a tile; 4x2, 3x4, 4x3, 1x4, 1x8 and 2x6 measured within the noise of it.
  for (; r + 2 <= r1; r += 2) {
    int64_t t = 0;
    for (; t + 4 <= T; t += 4) tile<D, 2, 4>(W, bias, xq, xd, y, ldy, r, t, acc, nullptr);
    for (; t < T; ++t) tile<D, 2, 1>(W, bias, xq, xd, y, ldy, r, t, acc, nullptr);
  }
  for (; r < r1; ++r)
    for (int64_t t = 0; t < T; ++t) tile<D, 1, 1>(W, bias, xq, xd, y, ldy, r, t, acc, nullptr);
}

// quantize_activations' AVX2 twin, the same bits: max|x| exact, the same float division and product,
// rounding to nearest even (_mm256_round_ps, as nearbyint in the default rounding mode).
RAD_AVX2 void quantize_activations_avx2(const float* x, int64_t ldx, int64_t T, int64_t K, int8_t* q, float* d) {
  const int64_t nb = K / kBlock;
  const __m256 sign = _mm256_set1_ps(-0.0f);
  const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t b = 0; b < nb; ++b) {
      const float* v = x + t * ldx + b * kBlock;
      __m256 v0 = _mm256_loadu_ps(v), v1 = _mm256_loadu_ps(v + 8), v2 = _mm256_loadu_ps(v + 16),
             v3 = _mm256_loadu_ps(v + 24);
      __m256 m = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign, v0), _mm256_andnot_ps(sign, v1)),
                               _mm256_max_ps(_mm256_andnot_ps(sign, v2), _mm256_andnot_ps(sign, v3)));
      __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
      h = _mm_max_ps(h, _mm_movehl_ps(h, h));
      h = _mm_max_ss(h, _mm_movehdup_ps(h));
      const float amax = _mm_cvtss_f32(h);
      const float s = amax / 127.0f, inv = s != 0 ? 1.0f / s : 0.0f;
      d[t * nb + b] = s;
      const __m256 iv = _mm256_set1_ps(inv);
      constexpr int kRound = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
      const __m256i i0 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v0, iv), kRound));
      const __m256i i1 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v1, iv), kRound));
      const __m256i i2 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v2, iv), kRound));
      const __m256i i3 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v3, iv), kRound));
      // packs work within 128-bit lanes; the permute puts the 32 bytes back in order.
      const __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + t * K + b * kBlock), _mm256_permutevar8x32_epi32(p, order));
    }
}

#endif

}  // namespace

void quantize_activations(const float* x, int64_t ldx, int64_t T, int64_t K, int8_t* q, float* d) {
  const int64_t nb = K / kBlock;
  for (int64_t t = 0; t < T; ++t)
    for (int64_t b = 0; b < nb; ++b) {
      const float* v = x + t * ldx + b * kBlock;
      float amax = 0;
      for (int k = 0; k < kBlock; ++k) amax = std::max(amax, std::fabs(v[k]));
      const float s = amax / 127.0f, inv = s != 0 ? 1.0f / s : 0.0f;
      d[t * nb + b] = s;
      int8_t* out = q + t * K + b * kBlock;
      for (int k = 0; k < kBlock; ++k) out[k] = static_cast<int8_t>(std::nearbyint(v[k] * inv));
    }
}

void QuantizedActivations::quantize(const float* x, int64_t ldx, int64_t rows, int64_t cols, bool avx2,
                                    bool with_sums) {
  T = rows;
  K = cols;
  if (static_cast<int64_t>(q.size()) < T * K) q.resize(static_cast<size_t>(T * K));
  if (static_cast<int64_t>(d.size()) < T * (K / kBlock)) d.resize(static_cast<size_t>(T * (K / kBlock)));
#if RAD_HAVE_X86
  if (avx2) {
    quantize_activations_avx2(x, ldx, T, K, q.data(), d.data());
    if (with_sums) block_sums();
    return;
  }
#else
  (void)avx2;
#endif
  quantize_activations(x, ldx, T, K, q.data(), d.data());
  if (with_sums) block_sums();
}

void QuantizedActivations::block_sums() {
  const int64_t nb = K / kBlock;
  if (static_cast<int64_t>(sum.size()) < T * nb) sum.resize(static_cast<size_t>(T * nb));
  for (int64_t i = 0; i < T * nb; ++i) {
    int32_t s = 0;
    for (int k = 0; k < kBlock; ++k) s += q[i * kBlock + k];
    sum[i] = s;
  }
}

void matmul_blocks(const Mat& W, const float* bias, const QuantizedActivations& xq, float* y, int64_t ldy, int64_t r0,
                   int64_t r1, bool accumulate, bool avx2) {
  if (dtype_is_subblock(W.dtype)) return matmul_subblocks(W, bias, xq, y, ldy, r0, r1, accumulate, avx2);
#if RAD_HAVE_X86
  if (avx2) {
    if (W.dtype == DType::kQ8_0)
      return matmul_blocks_avx2<DType::kQ8_0>(W, bias, xq.q.data(), xq.d.data(), xq.T, y, ldy, r0, r1, accumulate);
    if (W.dtype == DType::kQ5_0)
      return matmul_blocks_avx2<DType::kQ5_0>(W, bias, xq.q.data(), xq.d.data(), xq.T, y, ldy, r0, r1, accumulate);
    return matmul_blocks_avx2<DType::kQ4_0>(W, bias, xq.q.data(), xq.d.data(), xq.T, y, ldy, r0, r1, accumulate);
  }
#else
  (void)avx2;
#endif
  matmul_blocks_portable(W, bias, xq.q.data(), xq.d.data(), xq.T, y, ldy, r0, r1, accumulate);
}

void matmul_blocks(const Mat& W, const float* bias, const float* x, int64_t ldx, int64_t T, float* y, int64_t ldy,
                   int64_t r0, int64_t r1, bool accumulate, bool avx2) {
  thread_local QuantizedActivations xq;  // no allocation once grown to the widest matrix
  xq.quantize(x, ldx, T, W.cols, avx2, dtype_is_subblock(W.dtype));
  matmul_blocks(W, bias, xq, y, ldy, r0, r1, accumulate, avx2);
}

}  // namespace rad::runtime::detail
