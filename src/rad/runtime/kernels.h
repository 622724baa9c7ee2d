// Compute kernels of the runtime, float32 activations with f32 / bf16 / f16 / Q8_0 / Q4_0 weights
// read as stored (the block types in kernels_blocks.h). Two implementations of each: AVX2+FMA+F16C (compiled with target attributes, so the
// build needs no -mavx2) and portable C++; the AVX2 one is chosen at run time when the CPU has it.
#pragma once

#include <cstdint>

#include "rad/core/half_float.h"
#include "rad/runtime/tensor_store.h"

namespace rad::runtime {

// A row-major weight matrix [rows, cols] in its stored dtype (may be unaligned); rows of
// row_bytes(dtype, cols) bytes, cols a multiple of 32 for the block types.
struct Mat {
  const uint8_t* data = nullptr;
  DType dtype = DType::kF32;
  int64_t rows = 0, cols = 0;
  bool empty() const { return data == nullptr; }
};

enum class Isa { kPortable, kAvx2 };
Isa detected_isa();              // what this CPU supports
Isa active_isa();                // what the kernels use now
void set_isa(Isa isa);           // for tests and benchmarks; kAvx2 on a CPU without it is refused
const char* isa_name(Isa isa);

// y[t*ldy + r] (+)= bias[r] + sum_c W[r, c] * x[t*ldx + c] for rows [r0, r1), tokens [0, T).
// accumulate: add into y instead of overwriting it. bias may be null. Block-type weights multiply
// activations quantised to 8 bits per block of 32 (kernels_blocks.h), not the float32 x itself.
void matmul(const Mat& W, const float* bias, const float* x, int64_t ldx, int64_t T, float* y, int64_t ldy,
            int64_t r0, int64_t r1, bool accumulate);

// The same for many row ranges of block-type matrices reading one x: quantise x once
// (QuantizedActivations, kernels_blocks.h), then call matmul_quantized per range.
namespace detail {
struct QuantizedActivations;
}
void matmul_quantized(const Mat& W, const float* bias, const detail::QuantizedActivations& xq, float* y, int64_t ldy,
                      int64_t r0, int64_t r1, bool accumulate);

float dot(const float* a, const float* b, int64_t n);
void axpy(float a, const float* x, float* y, int64_t n);  // y += a * x
void scale(float a, float* y, int64_t n);                 // y *= a

// Attention over n keys/values stored every `ld` floats:
//   scores: out[j] = dot(q, K + j * ld) / div          (div = sqrt(Dh), as the libtorch model)
//   weighted_sum: out[0:Dh] += sum_j p[j] * (V + j * ld)
void attn_scores(const float* q, const float* K, int64_t ld, int64_t n, int64_t Dh, float div, float* out);
void weighted_sum(const float* p, const float* V, int64_t ld, int64_t n, int64_t Dh, float* out);
// The same over an f16 (IEEE half) K/V cache: each element converted on the fly, float32
// accumulation, the same order of operations as the float versions - so on keys/values that are
// already f16 values the results are bitwise those of attn_scores / weighted_sum on their floats.
void attn_scores_f16(const float* q, const uint16_t* K, int64_t ld, int64_t n, int64_t Dh, float div, float* out);
void weighted_sum_f16(const float* p, const uint16_t* V, int64_t ld, int64_t n, int64_t Dh, float* out);

// In place: s[j] = exp(s[j] - max) / sum (float32 softmax over n scores). Returns the
// log-sum-exp of the input, max + log(sum).
float softmax(float* s, int64_t n);

// One SSM step of one head: S = alpha * S + x B^T; y = S C   (S [P, N], x/y [P], B/C [N]).
void ssm_step(float* S, int64_t P, int64_t N, float alpha, const float* x, const float* B, const float* C, float* y);

// dst[i] = float(src[i]) for a row of a stored tensor (block types: n a multiple of 32).
void to_f32(const uint8_t* src, DType dtype, float* dst, int64_t n);

// Scalar conversions: rad/core/half_float.h. The row version uses _mm256_cvtps_ph on the AVX2 path
// (the same bits as the scalar one).
using rad::bf16_to_f32;
using rad::f16_to_f32;
using rad::f32_to_f16;
void f32_to_f16(const float* src, uint16_t* dst, int64_t n);
void round_to_f16(float* x, int64_t n);  // in place: x[i] = f16_to_f32(f32_to_f16(x[i]))

}  // namespace rad::runtime
