// What the runtime's AVX2 kernels share (kernels.cpp, kernels_blocks.cpp): the target attribute that
// lets them be compiled without -mavx2 (chosen at run time, rad/runtime/kernels.h), and the
// horizontal sum whose order the portable twins copy.
#pragma once

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
