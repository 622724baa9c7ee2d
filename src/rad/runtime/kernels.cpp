#include "rad/runtime/kernels.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "rad/core/error.h"
#include "rad/io/gguf_dequant.h"
#include "rad/runtime/kernels_blocks.h"
#include "rad/runtime/simd.h"


namespace rad::runtime {

namespace {

inline float load_scalar(const uint8_t* p, DType d, int64_t i) {
  switch (d) {
    case DType::kF32: {
      float f;
      std::memcpy(&f, p + 4 * i, 4);
      return f;
    }
    case DType::kBF16: {
      uint16_t v;
      std::memcpy(&v, p + 2 * i, 2);
      return bf16_to_f32(v);
    }
    case DType::kF16: {
      uint16_t v;
      std::memcpy(&v, p + 2 * i, 2);
      return f16_to_f32(v);
    }
    default: break;  // block types: whole rows only (to_f32, matmul_blocks)
  }
  return 0;
}

Isa detect() {
#if RAD_HAVE_X86
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c"))
    return Isa::kAvx2;
#endif
  return Isa::kPortable;
}

Isa g_isa = detect();

// ---- portable kernels ----

void matmul_portable(const Mat& W, const float* bias, const float* x, int64_t ldx, int64_t T, float* y, int64_t ldy,
                     int64_t r0, int64_t r1, bool accumulate) {
  const int64_t K = W.cols;
  const size_t es = dtype_block_bytes(W.dtype);
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* row = W.data + static_cast<size_t>(r) * K * es;
    for (int64_t t = 0; t < T; ++t) {
      const float* xt = x + t * ldx;
      float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};  // 8 partial sums, as the vector kernel
      int64_t c = 0;
      for (; c + 8 <= K; c += 8)
        for (int j = 0; j < 8; ++j) acc[j] += load_scalar(row, W.dtype, c + j) * xt[c + j];
      float s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
      for (; c < K; ++c) s += load_scalar(row, W.dtype, c) * xt[c];
      if (bias != nullptr) s += bias[r];
      float& out = y[t * ldy + r];
      out = accumulate ? out + s : s;
    }
  }
}

float dot_portable(const float* a, const float* b, int64_t n) {
  float s = 0;
  for (int64_t i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}

void axpy_portable(float a, const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
}

inline float elem(float v) { return v; }
inline float elem(uint16_t v) { return f16_to_f32(v); }

// Element types E: float, or uint16_t holding f16 (the K/V cache); same order as dot/axpy_portable.
template <typename E>
void attn_scores_portable(const float* q, const E* K, int64_t ld, int64_t n, int64_t Dh, float div, float* out) {
  for (int64_t j = 0; j < n; ++j) {
    const E* k = K + j * ld;
    float s = 0;
    for (int64_t i = 0; i < Dh; ++i) s += q[i] * elem(k[i]);
    out[j] = s / div;
  }
}

template <typename E>
void weighted_sum_portable(const float* p, const E* V, int64_t ld, int64_t n, int64_t Dh, float* out) {
  for (int64_t j = 0; j < n; ++j) {
    const E* v = V + j * ld;
    for (int64_t i = 0; i < Dh; ++i) out[i] += p[j] * elem(v[i]);
  }
}

float softmax_portable(float* s, int64_t n) {
  float mx = -INFINITY;
  for (int64_t j = 0; j < n; ++j) mx = std::max(mx, s[j]);
  float sum = 0;
  for (int64_t j = 0; j < n; ++j) {
    s[j] = std::exp(s[j] - mx);
    sum += s[j];
  }
  for (int64_t j = 0; j < n; ++j) s[j] /= sum;
  return mx + std::log(sum);
}

void ssm_step_portable(float* S, int64_t P, int64_t N, float alpha, const float* x, const float* B, const float* C,
                       float* y) {
  for (int64_t p = 0; p < P; ++p) {
    float* s = S + p * N;
    float acc = 0;
    for (int64_t n = 0; n < N; ++n) {
      s[n] = alpha * s[n] + x[p] * B[n];
      acc += s[n] * C[n];
    }
    y[p] = acc;
  }
}

// ---- AVX2 + FMA + F16C kernels ----
#if RAD_HAVE_X86

using simd::hsum;

template <DType D>
RAD_AVX2 inline __m256 load8(const uint8_t* row, int64_t c) {
  if constexpr (D == DType::kF32) {
    return _mm256_loadu_ps(reinterpret_cast<const float*>(row) + c);
  } else if constexpr (D == DType::kBF16) {
    __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 2 * c));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  } else {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 2 * c)));
  }
}

// 8 columns (from column c, x pointing at them for token 0) of every row and token of a tile.
template <DType D, int R, int TT>
RAD_AVX2 inline void tile_step(const uint8_t* const* rows, const float* x, int64_t ldx, __m256 (*acc)[TT], int64_t c) {
  __m256 xv[TT];
  for (int j = 0; j < TT; ++j) xv[j] = _mm256_loadu_ps(x + j * ldx);
  for (int i = 0; i < R; ++i) {
    const __m256 w = load8<D>(rows[i], c);
    for (int j = 0; j < TT; ++j) acc[i][j] = _mm256_fmadd_ps(w, xv[j], acc[i][j]);
  }
}

// R rows x TT tokens of y, starting at row r and token t. Every (row, token) sums in one order
// whatever R, TT, the row block or the thread: one 8-wide accumulator over the columns in order,
// its horizontal sum, then the scalar tail - so decode (T = 1), batched decode and prefill give a
// row the same bits (serve's batched sequences keep their solo outputs; tests/test_runtime.cpp).
// pf: when not null, the R rows that follow (the next tile) are prefetched as these are read, one
// cache line per row every 64 bytes of row: R short interleaved row streams (a 576-wide bf16 row is
// 18 lines) defeat the hardware prefetchers, and decode of a memory-bound model waited on them.
template <DType D, int R, int TT>
RAD_AVX2 inline void tile(const Mat& W, const float* bias, const float* x, int64_t ldx, float* y, int64_t ldy,
                          int64_t r, int64_t t, bool accumulate, const uint8_t* pf = nullptr) {
  const int64_t K = W.cols;
  constexpr size_t es = D == DType::kF32 ? 4 : 2;
  constexpr int64_t kLine = 64 / es;  // columns per cache line
  const size_t row_bytes = static_cast<size_t>(K) * es;
  const uint8_t* rows[R];
  for (int i = 0; i < R; ++i) rows[i] = W.data + static_cast<size_t>(r + i) * row_bytes;
  __m256 acc[R][TT];
  for (int i = 0; i < R; ++i)
    for (int j = 0; j < TT; ++j) acc[i][j] = _mm256_setzero_ps();
  int64_t c = 0;
  if (pf != nullptr) {
    for (; c + kLine <= K; c += kLine) {
      for (int i = 0; i < R; ++i) _mm_prefetch(reinterpret_cast<const char*>(pf + i * row_bytes + c * es), _MM_HINT_T0);
      for (int64_t u = 0; u < kLine; u += 8) tile_step<D, R, TT>(rows, x + t * ldx + c + u, ldx, acc, c + u);
    }
    for (int i = 0; i < R; ++i) {  // the rest of each row: at most two lines (rows need not be aligned)
      if (c < K) _mm_prefetch(reinterpret_cast<const char*>(pf + i * row_bytes + c * es), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(pf + (i + 1) * row_bytes - 1), _MM_HINT_T0);
    }
  }
  for (; c + 8 <= K; c += 8) tile_step<D, R, TT>(rows, x + t * ldx + c, ldx, acc, c);
  for (int i = 0; i < R; ++i)
    for (int j = 0; j < TT; ++j) {
      float s = hsum(acc[i][j]);
      for (int64_t k = c; k < K; ++k) s += load_scalar(rows[i], D, k) * x[(t + j) * ldx + k];
      if (bias != nullptr) s += bias[r + i];
      float& out = y[(t + j) * ldy + r + i];
      out = accumulate ? out + s : s;
    }
}

template <DType D>
RAD_AVX2 void matmul_avx2_t(const Mat& W, const float* bias, const float* x, int64_t ldx, int64_t T, float* y,
                            int64_t ldy, int64_t r0, int64_t r1, bool acc) {
  int64_t r = r0;
  if (T == 1) {
    // Decode: one row a pass, prefetching ahead (simd::kDecodeRowsAhead has the measurement;
    // bench/RESULTS.md the GB/s against the STREAM-like probe).
    constexpr int64_t kAhead = simd::kDecodeRowsAhead;
    const size_t row_bytes = static_cast<size_t>(W.cols) * dtype_block_bytes(W.dtype);
    for (; r < r1; ++r) {
      const bool ahead = r + kAhead < W.rows;
      tile<D, 1, 1>(W, bias, x, ldx, y, ldy, r, 0, acc, ahead ? W.data + (r + kAhead) * row_bytes : nullptr);
    }
    return;
  }
  // prefill: 4 rows x 3 tokens per tile (12 accumulators). Tokens outer, rows inner: the engine's
  // row blocks (16 rows, ~18 KB of 16-bit weights at K = 576) and 3 tokens of x (~7 KB) both stay in
  // L1, where rows outer streamed the whole chunk of x (64 tokens, 147-393 KB) from L2 per 4 rows.
  const int64_t r4 = r0 + (r1 - r0) / 4 * 4;
  int64_t t3 = 0;
  for (; t3 + 3 <= T; t3 += 3)
    for (int64_t q = r0; q < r4; q += 4) tile<D, 4, 3>(W, bias, x, ldx, y, ldy, q, t3, acc);
  for (; t3 < T; ++t3)
    for (int64_t q = r0; q < r4; q += 4) tile<D, 4, 1>(W, bias, x, ldx, y, ldy, q, t3, acc);
  r = r4;
  for (; r + 2 <= r1; r += 2) {
    int64_t t = 0;
    for (; t + 4 <= T; t += 4) tile<D, 2, 4>(W, bias, x, ldx, y, ldy, r, t, acc);
    for (; t < T; ++t) tile<D, 2, 1>(W, bias, x, ldx, y, ldy, r, t, acc);
  }
  for (; r < r1; ++r) {
    int64_t t = 0;
    for (; t + 4 <= T; t += 4) tile<D, 1, 4>(W, bias, x, ldx, y, ldy, r, t, acc);
    for (; t < T; ++t) tile<D, 1, 1>(W, bias, x, ldx, y, ldy, r, t, acc);
  }
}

RAD_AVX2 inline __m256 load8e(const float* p) { return _mm256_loadu_ps(p); }
RAD_AVX2 inline __m256 load8e(const uint16_t* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
RAD_AVX2 inline float elem_avx2(float v) { return v; }
RAD_AVX2 inline float elem_avx2(uint16_t v) { return _cvtsh_ss(v); }
RAD_AVX2 inline __m128 load4e(const float* p) { return _mm_loadu_ps(p); }
RAD_AVX2 inline __m128 load4e(const uint16_t* p) {
  return _mm_cvtph_ps(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
}
// a * b + c with one rounding, spelled out: left to the compiler, contracting a scalar tail into an
// FMA or not may differ between the float and the f16 instantiations.
RAD_AVX2 inline float fma_ss(float a, float b, float c) {
  return _mm_cvtss_f32(_mm_fmadd_ss(_mm_set_ss(a), _mm_set_ss(b), _mm_set_ss(c)));
}

// E: float, or uint16_t holding f16 (the K/V cache), converted on load; one order of operations.
template <typename E>
RAD_AVX2 float dot_avx2(const float* a, const E* b, int64_t n) {
  __m256 acc = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), load8e(b + i), acc);
  float s = hsum(acc);
  for (; i < n; ++i) s = fma_ss(a[i], elem_avx2(b[i]), s);
  return s;
}

template <typename E>
RAD_AVX2 void axpy_avx2(float a, const E* x, float* y, int64_t n) {
  const __m256 va = _mm256_set1_ps(a);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, load8e(x + i), _mm256_loadu_ps(y + i)));
  for (; i < n; ++i) y[i] = fma_ss(a, elem_avx2(x[i]), y[i]);
}

// Head dims that are not a multiple of 8 (the default teacher's 12) keep their 4-wide lane in
// registers across keys: a per-key dot product or axpy with a scalar tail made 16k-context decode
// latency-bound (~17 ns per key; bench/RESULTS.md). Same order of operations as before, so results
// are unchanged bit for bit.
template <typename E>
RAD_AVX2 void attn_scores_avx2(const float* q, const E* K, int64_t ld, int64_t n, int64_t Dh, float div,
                               float* out) {
  // Per key: 8-wide FMA lanes, their horizontal sum, then each remaining dim added with one FMA in
  // order (dot_avx2's order). The 4-wide lane does those FMAs for 4 keys at once, transposed.
  const int64_t D8 = Dh & ~int64_t{7}, D4 = (Dh - D8) >= 4 ? D8 + 4 : D8;
  int64_t j = 0;
  for (; j + 4 <= n; j += 4) {  // 4 keys at a time: independent FMA chains
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    const E* k = K + j * ld;
    for (int64_t i = 0; i < D8; i += 8) {
      const __m256 qv = _mm256_loadu_ps(q + i);
      a0 = _mm256_fmadd_ps(qv, load8e(k + i), a0);
      a1 = _mm256_fmadd_ps(qv, load8e(k + ld + i), a1);
      a2 = _mm256_fmadd_ps(qv, load8e(k + 2 * ld + i), a2);
      a3 = _mm256_fmadd_ps(qv, load8e(k + 3 * ld + i), a3);
    }
    alignas(16) float s[4] = {hsum(a0), hsum(a1), hsum(a2), hsum(a3)};
    if (D4 > D8) {
      __m128 r0 = load4e(k + D8), r1 = load4e(k + ld + D8), r2 = load4e(k + 2 * ld + D8), r3 = load4e(k + 3 * ld + D8);
      _MM_TRANSPOSE4_PS(r0, r1, r2, r3);  // r_i: dim D8 + i of the 4 keys
      __m128 acc = _mm_load_ps(s);
      acc = _mm_fmadd_ps(_mm_set1_ps(q[D8]), r0, acc);
      acc = _mm_fmadd_ps(_mm_set1_ps(q[D8 + 1]), r1, acc);
      acc = _mm_fmadd_ps(_mm_set1_ps(q[D8 + 2]), r2, acc);
      acc = _mm_fmadd_ps(_mm_set1_ps(q[D8 + 3]), r3, acc);
      _mm_store_ps(s, acc);
    }
    for (int64_t i = D4; i < Dh; ++i)
      for (int r = 0; r < 4; ++r) s[r] = fma_ss(q[i], elem_avx2(k[r * ld + i]), s[r]);
    for (int r = 0; r < 4; ++r) out[j + r] = s[r] / div;
  }
  for (; j < n; ++j) out[j] = dot_avx2(q, K + j * ld, Dh) / div;
}

template <typename E>
RAD_AVX2 void weighted_sum_avx2(const float* p, const E* V, int64_t ld, int64_t n, int64_t Dh, float* out) {
  const int64_t D8 = Dh & ~int64_t{7}, D4 = (Dh - D8) >= 4 ? D8 + 4 : D8;
  // Blocks of up to 32 dims in 8-wide accumulators over all n rows; the last block also carries the
  // 4-wide lane and the scalar rest (at most 3), so a head dim up to 36 is one pass over V.
  int64_t i0 = 0;
  do {
    const int64_t w = std::min<int64_t>(32, D8 - i0) / 8;
    const bool last = i0 + 8 * w >= D8;
    const bool lane4 = last && D4 > D8;
    const int64_t n_rest = last ? Dh - D4 : 0;
    __m256 acc[4];
    for (int64_t b = 0; b < w; ++b) acc[b] = _mm256_loadu_ps(out + i0 + 8 * b);
    __m128 acc4 = lane4 ? _mm_loadu_ps(out + D8) : _mm_setzero_ps();
    float rest[3] = {0, 0, 0};
    for (int64_t r = 0; r < n_rest; ++r) rest[r] = out[D4 + r];
    for (int64_t j = 0; j < n; ++j) {
      const __m256 pj = _mm256_set1_ps(p[j]);
      const E* v = V + j * ld;
      for (int64_t b = 0; b < w; ++b) acc[b] = _mm256_fmadd_ps(pj, load8e(v + i0 + 8 * b), acc[b]);
      if (lane4) acc4 = _mm_fmadd_ps(_mm256_castps256_ps128(pj), load4e(v + D8), acc4);
      for (int64_t r = 0; r < n_rest; ++r) rest[r] = fma_ss(p[j], elem_avx2(v[D4 + r]), rest[r]);
    }
    for (int64_t b = 0; b < w; ++b) _mm256_storeu_ps(out + i0 + 8 * b, acc[b]);
    if (lane4) _mm_storeu_ps(out + D8, acc4);
    for (int64_t r = 0; r < n_rest; ++r) out[D4 + r] = rest[r];
    i0 += 32;
  } while (i0 < D8);
}

RAD_AVX2 void f32_to_f16_avx2(const float* src, uint16_t* dst, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i),
                     _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  for (; i < n; ++i) dst[i] = static_cast<uint16_t>(_cvtss_sh(src[i], _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}

RAD_AVX2 void round_to_f16_avx2(float* x, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(x + i, _mm256_cvtph_ps(_mm256_cvtps_ph(_mm256_loadu_ps(x + i),
                                                            _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)));
  for (; i < n; ++i) x[i] = _cvtsh_ss(static_cast<uint16_t>(_cvtss_sh(x[i], _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)));
}

// exp(x) for 8 floats (Cephes expf: range reduction by ln 2, degree-5 polynomial; ~1 ulp).
RAD_AVX2 inline __m256 exp8(__m256 x) {
  x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.3f)), _mm256_set1_ps(88.3f));
  __m256 fx = _mm256_floor_ps(_mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504088896341f), _mm256_set1_ps(0.5f)));
  x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), x);
  x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), x);
  __m256 y = _mm256_set1_ps(1.9875691500e-4f);
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.3981999507e-3f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(8.3334519073e-3f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(4.1665795894e-2f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.6666665459e-1f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(5.0000001201e-1f));
  y = _mm256_fmadd_ps(y, _mm256_mul_ps(x, x), _mm256_add_ps(x, _mm256_set1_ps(1.0f)));
  __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvttps_epi32(fx), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(y, _mm256_castsi256_ps(e));
}

RAD_AVX2 float softmax_avx2(float* s, int64_t n) {
  __m256 vm = _mm256_set1_ps(-INFINITY);
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) vm = _mm256_max_ps(vm, _mm256_loadu_ps(s + j));
  __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(vm), _mm256_extractf128_ps(vm, 1));
  m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
  m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
  float mx = _mm_cvtss_f32(m4);
  for (; j < n; ++j) mx = std::max(mx, s[j]);
  const __m256 vmx = _mm256_set1_ps(mx);
  __m256 vs = _mm256_setzero_ps();
  j = 0;
  for (; j + 8 <= n; j += 8) {
    __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(s + j), vmx));
    _mm256_storeu_ps(s + j, e);
    vs = _mm256_add_ps(vs, e);
  }
  float sum = hsum(vs);
  for (; j < n; ++j) {
    s[j] = std::exp(s[j] - mx);
    sum += s[j];
  }
  const __m256 vsum = _mm256_set1_ps(sum);
  j = 0;
  for (; j + 8 <= n; j += 8) _mm256_storeu_ps(s + j, _mm256_div_ps(_mm256_loadu_ps(s + j), vsum));
  for (; j < n; ++j) s[j] /= sum;
  return mx + std::log(sum);
}

RAD_AVX2 void ssm_step_avx2(float* S, int64_t P, int64_t N, float alpha, const float* x, const float* B,
                            const float* C, float* y) {
  const __m256 va = _mm256_set1_ps(alpha);
  for (int64_t p = 0; p < P; ++p) {
    float* s = S + p * N;
    const __m256 vx = _mm256_set1_ps(x[p]);
    __m256 acc = _mm256_setzero_ps();
    int64_t n = 0;
    for (; n + 8 <= N; n += 8) {
      __m256 v = _mm256_fmadd_ps(va, _mm256_loadu_ps(s + n), _mm256_mul_ps(vx, _mm256_loadu_ps(B + n)));
      _mm256_storeu_ps(s + n, v);
      acc = _mm256_fmadd_ps(v, _mm256_loadu_ps(C + n), acc);
    }
    float r = hsum(acc);
    for (; n < N; ++n) {
      s[n] = alpha * s[n] + x[p] * B[n];
      r += s[n] * C[n];
    }
    y[p] = r;
  }
}

#endif  // RAD_HAVE_X86

}  // namespace

Isa detected_isa() {
  static const Isa isa = detect();
  return isa;
}
Isa active_isa() { return g_isa; }
const char* isa_name(Isa isa) { return isa == Isa::kAvx2 ? "avx2+fma+f16c" : "portable"; }

void set_isa(Isa isa) {
  RAD_CHECK(isa == Isa::kPortable || detected_isa() == Isa::kAvx2,
            "runtime: AVX2/FMA/F16C kernels requested but this CPU does not support them");
  g_isa = isa;
}

void matmul(const Mat& W, const float* bias, const float* x, int64_t ldx, int64_t T, float* y, int64_t ldy,
            int64_t r0, int64_t r1, bool accumulate) {
  if (r0 >= r1 || T <= 0) return;
  if (dtype_is_block(W.dtype))
    return detail::matmul_blocks(W, bias, x, ldx, T, y, ldy, r0, r1, accumulate, g_isa == Isa::kAvx2);
#if RAD_HAVE_X86
  if (g_isa == Isa::kAvx2) {
    switch (W.dtype) {
      case DType::kF32: return matmul_avx2_t<DType::kF32>(W, bias, x, ldx, T, y, ldy, r0, r1, accumulate);
      case DType::kBF16: return matmul_avx2_t<DType::kBF16>(W, bias, x, ldx, T, y, ldy, r0, r1, accumulate);
      case DType::kF16: return matmul_avx2_t<DType::kF16>(W, bias, x, ldx, T, y, ldy, r0, r1, accumulate);
      default: break;
    }
  }
#endif
  matmul_portable(W, bias, x, ldx, T, y, ldy, r0, r1, accumulate);
}

void matmul_quantized(const Mat& W, const float* bias, const detail::QuantizedActivations& xq, float* y, int64_t ldy,
                      int64_t r0, int64_t r1, bool accumulate) {
  if (r0 >= r1 || xq.T <= 0) return;
  detail::matmul_blocks(W, bias, xq, y, ldy, r0, r1, accumulate, g_isa == Isa::kAvx2);
}

float dot(const float* a, const float* b, int64_t n) {
#if RAD_HAVE_X86
  if (g_isa == Isa::kAvx2) return dot_avx2(a, b, n);
#endif
  return dot_portable(a, b, n);
}

void axpy(float a, const float* x, float* y, int64_t n) {
#if RAD_HAVE_X86
  if (g_isa == Isa::kAvx2) return axpy_avx2(a, x, y, n);
#endif
  axpy_portable(a, x, y, n);
}

void scale(float a, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] *= a;
}

void attn_scores(const float* q, const float* K, int64_t ld, int64_t n, int64_t Dh, float div, float* out) {
#if RAD_HAVE_X86
  if (g_isa == Isa::kAvx2) return attn_scores_avx2(q, K, ld, n, Dh, div, out);
#endif
  attn_scores_portable(q, K, ld, n, Dh, div, out);
}

void weighted_sum(const float* p, const float* V, int64_t ld, int64_t n, int64_t Dh, float* out) {
#if RAD_HAVE_X86
  if (g_isa == Isa::kAvx2) return weighted_sum_avx2(p, V, ld, n, Dh, out);
#endif
  weighted_sum_portable(p, V, ld, n, Dh, out);
}

void attn_scores_f16(const float* q, const uint16_t* K, int64_t ld, int64_t n, int64_t Dh, float div, float* out) {
#if RAD_HAVE_X86
  if (g_isa == Isa::kAvx2) return attn_scores_avx2(q, K, ld, n, Dh, div, out);
#endif
  attn_scores_portable(q, K, ld, n, Dh, div, out);
}

void weighted_sum_f16(const float* p, const uint16_t* V, int64_t ld, int64_t n, int64_t Dh, float* out) {
#if RAD_HAVE_X86
  if (g_isa == Isa::kAvx2) return weighted_sum_avx2(p, V, ld, n, Dh, out);
#endif
  weighted_sum_portable(p, V, ld, n, Dh, out);
}

void f32_to_f16(const float* src, uint16_t* dst, int64_t n) {
#if RAD_HAVE_X86
  if (g_isa == Isa::kAvx2) return f32_to_f16_avx2(src, dst, n);
#endif
  for (int64_t i = 0; i < n; ++i) dst[i] = f32_to_f16(src[i]);
}

void round_to_f16(float* x, int64_t n) {
#if RAD_HAVE_X86
  if (g_isa == Isa::kAvx2) return round_to_f16_avx2(x, n);
#endif
  for (int64_t i = 0; i < n; ++i) x[i] = f16_to_f32(f32_to_f16(x[i]));
}

float softmax(float* s, int64_t n) {
#if RAD_HAVE_X86
  if (g_isa == Isa::kAvx2) return softmax_avx2(s, n);
#endif
  return softmax_portable(s, n);
}

void ssm_step(float* S, int64_t P, int64_t N, float alpha, const float* x, const float* B, const float* C, float* y) {
#if RAD_HAVE_X86
  if (g_isa == Isa::kAvx2) return ssm_step_avx2(S, P, N, alpha, x, B, C, y);
#endif
  ssm_step_portable(S, P, N, alpha, x, B, C, y);
}

void to_f32(const uint8_t* src, DType dtype, float* dst, int64_t n) {
  if (dtype_is_block(dtype)) {
    const io::GgmlType g = dtype == DType::kQ8_0   ? io::GgmlType::kQ8_0
                           : dtype == DType::kQ4_0 ? io::GgmlType::kQ4_0
                           : dtype == DType::kQ5_0 ? io::GgmlType::kQ5_0
                           : dtype == DType::kQ4_K ? io::GgmlType::kQ4_K
                                                   : io::GgmlType::kQ6_K;
    io::dequantize(g, src, static_cast<uint64_t>(n), dst);
    return;
  }
  for (int64_t i = 0; i < n; ++i) dst[i] = load_scalar(src, dtype, i);
}

}  // namespace rad::runtime
