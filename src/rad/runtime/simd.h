// What the runtime's kernels share (kernels.cpp, kernels_blocks.cpp, kernels_subblocks.cpp): the target attribute that
// lets them be compiled without -mavx2 (chosen at run time, rad/runtime/kernels.h), the horizontal
// sum whose order the portable twins copy, and the decode loop's prefetch distance.
#pragma once

#include <cstdint>

namespace rad::runtime::simd {
// Decode (one token) reads every weight once, so beyond the caches it is bound by memory. Both the
// 16-bit and the block kernels take one row a pass and prefetch the row this many rows ahead as it
// is read (also past the thread's block of rows: the pool hands out the next block next; never past
// the matrix). On SmolLM2-135M (bench/RESULTS.md, issue 30, 2026-12-07) this beat 2, 4 and 8 rows a
// pass at any distance and 1 or 2 rows ahead: 16-bit decode 1.2x the tokens/s of 8 rows a pass
// prefetching the next 8.
constexpr int64_t kDecodeRowsAhead = 4;

// The portable kernels' twin of hsum() below: eight lanes summed in its order, so both give the same bits.
inline float hsum_lanes(const float* a) { return ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7])); }
}  // namespace rad::runtime::simd

#if defined(__x86_64__)
#include <immintrin.h>
#define RAD_HAVE_X86 1
#define RAD_AVX2 __attribute__((target("avx2,fma,f16c")))

namespace rad::runtime::simd {

// ((v0 + v4) + (v2 + v6)) + ((v1 + v5) + (v3 + v7))
RAD_AVX2 inline float hsum(__m256 v) {
  __m128 lo = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
  lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
  return _mm_cvtss_f32(lo);
}

}  // namespace rad::runtime::simd
#else
#define RAD_HAVE_X86 0
#endif
