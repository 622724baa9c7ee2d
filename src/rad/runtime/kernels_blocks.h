// Matrix products with weights in ggml's block types (Q8_0, Q4_0, Q5_0 here; Q4_K, Q6_K in
// kernels_subblocks.cpp), kept as stored: the activations
// are quantised per row to 8-bit blocks of 32 with a float scale (as llama.cpp pairs Q8_0 and Q4_0
// weights with Q8_0 activations), each block's int8 x int8 products summed exactly in integers, then
// scaled by (weight scale x activation scale) into float32. Internal to the runtime: kernels.h's
// matmul() calls it for the block types.
#pragma once

#include <cstdint>
#include <vector>

#include "rad/runtime/kernels.h"

namespace rad::runtime::detail {

// Activation rows quantised to 8-bit blocks: q [T, K] int8, d [T, K / 32] float.
// d = max|x| / 127 over the block, q = nearest integer to x / d (ties to even); a zero block has d 0.
void quantize_activations(const float* x, int64_t ldx, int64_t T, int64_t K, int8_t* q, float* d);

// Rows of activations quantised once, for every row block of every block-type matrix that reads them
// (the engine's matmul_jobs): quantising per call would redo it for each block of rows.
struct QuantizedActivations {
  std::vector<int8_t> q;     // [T, K]
  std::vector<float> d;      // [T, K / 32]
  std::vector<int32_t> sum;  // [T, K / 32]: each block's sum of q (Q4_K's mins multiply it); with_sums only
  int64_t T = 0, K = 0;
  // Grows the buffers, never shrinks them. avx2: the vector twin of quantize_activations (same bits).
  // with_sums: also fill `sum` (only the K-quant kernels read it: dtype_is_subblock).
  void quantize(const float* x, int64_t ldx, int64_t T, int64_t K, bool avx2, bool with_sums);

 private:
  void block_sums();  // sum from q
};

// Rows [r0, r1) of y = W x + bias for W of a block type and x quantised in `xq` (xq.K == W.cols).
void matmul_blocks(const Mat& W, const float* bias, const QuantizedActivations& xq, float* y, int64_t ldy, int64_t r0,
                   int64_t r1, bool accumulate, bool avx2);

// Q4_K and Q6_K (kernels_subblocks.cpp): super-blocks unpacked to 32-value sub-blocks with a scale per
// 16 values and a min, paired with the same activation blocks.
bool dtype_is_subblock(DType t);
void matmul_subblocks(const Mat& W, const float* bias, const QuantizedActivations& xq, float* y, int64_t ldy,
                      int64_t r0, int64_t r1, bool accumulate, bool avx2);

// matmul() for W.dtype Q8_0, Q4_0 or Q5_0 (W.cols a multiple of 32). Per (row, token): 8 float lanes, lane j
// accumulating fma(scale_w * scale_x, sum of the int products of block elements 4j..4j+3), the lanes
// summed as the AVX2 kernels' horizontal sum - so the portable and AVX2 paths give the same bits, and
// a row the same bits whatever the number of tokens or threads.
void matmul_blocks(const Mat& W, const float* bias, const float* x, int64_t ldx, int64_t T, float* y, int64_t ldy,
                   int64_t r0, int64_t r1, bool accumulate, bool avx2);

}  // namespace rad::runtime::detail
