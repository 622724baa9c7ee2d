// The runtime's block-type kernels (Q8_0, Q4_0 weights kept quantised; rad/runtime/kernels_blocks.h)
// against references computed here: the exact block sum in double from the same integers, and the
// float product with the dequantised weights (which differs by the activations' 8-bit rounding).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "rad/io/gguf.h"
#include "rad/io/gguf_dequant.h"
#include "rad/io/gguf_quantize.h"
#include "rad/runtime/kernels.h"
#include "rad/runtime/kernels_blocks.h"
#include "test_util.h"

namespace rad::test {
namespace {

using runtime::DType;
using runtime::Isa;

io::GgmlType ggml_of(DType t) { return t == DType::kQ8_0 ? io::GgmlType::kQ8_0 : io::GgmlType::kQ4_0; }

struct Quantized {
  std::vector<uint8_t> bytes;
  std::vector<float> dequantized;
};

Quantized quantize_matrix(DType t, const std::vector<float>& w) {
  Quantized q;
  q.bytes.resize(w.size() / 32 * runtime::dtype_block_bytes(t));
  io::quantize(ggml_of(t), w.data(), w.size(), q.bytes.data());
  q.dequantized.resize(w.size());
  io::dequantize(ggml_of(t), q.bytes.data(), w.size(), q.dequantized.data());
  return q;
}

std::vector<float> normal(std::mt19937& rng, size_t n, float scale = 1) {
  std::normal_distribution<float> nd(0, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = nd(rng);
  return v;
}

TEST(RuntimeBlocks, MatmulIsTheExactBlockSumOfItsIntegersInEveryIsaAndBatchSize) {
  IsaGuard guard;
  std::mt19937 rng(3);
  const int64_t rows = 13, cols = 160, T = 6;  // 5 blocks a row; an odd row count leaves a tail
  for (DType t : {DType::kQ8_0, DType::kQ4_0}) {
    std::vector<float> w = normal(rng, rows * cols), x = normal(rng, T * cols, 2), bias = normal(rng, rows);
    w[7] = 0;  // a zero, and a whole zero block in row 2, whose scale is 0
    for (int k = 0; k < 32; ++k) w[2 * cols + 64 + k] = 0;
    Quantized q = quantize_matrix(t, w);
    runtime::Mat W{q.bytes.data(), t, rows, cols};
    // The activations as the kernel quantises them.
    std::vector<int8_t> xq(T * cols);
    std::vector<float> xd(T * cols / 32);
    runtime::detail::quantize_activations(x.data(), cols, T, cols, xq.data(), xd.data());
    for (int64_t i = 0; i < T * cols; ++i) {
      ASSERT_LE(std::abs(xq[i]), 127);
      // Each activation within half a quantisation step of its value.
      ASSERT_LE(std::abs(xq[i] * xd[i / 32] - x[i]), 0.5f * xd[i / 32] * (1 + 1e-6f)) << i;
    }
    std::vector<std::vector<float>> results;
    for (Isa isa : isas()) {
      runtime::set_isa(isa);
      std::vector<float> y(T * rows), y1(T * rows);
      runtime::matmul(W, bias.data(), x.data(), cols, T, y.data(), rows, 0, rows, false);
      for (int64_t tt = 0; tt < T; ++tt)  // one token at a time: the decode path
        runtime::matmul(W, bias.data(), x.data() + tt * cols, cols, 1, y1.data() + tt * rows, rows, 0, rows, false);
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t tt = 0; tt < T; ++tt) {
          // Exact: sum over blocks of (weight scale x activation scale) x integer dot, in double.
          double exact = bias[r], magnitude = std::abs(bias[r]);
          for (int64_t b = 0; b < cols / 32; ++b) {
            long isum = 0;
            double wscale = 0;
            for (int k = 0; k < 32; ++k) {
              const int64_t c = b * 32 + k;
              // The block's integer: dequantised value / scale (exact for both types).
              const float deq = q.dequantized[r * cols + c];
              const uint8_t* blk = q.bytes.data() + (r * cols / 32 + b) * runtime::dtype_block_bytes(t);
              uint16_t h;
              std::memcpy(&h, blk, 2);
              wscale = runtime::f16_to_f32(h);
              const long wi = wscale == 0 ? 0 : std::lround(deq / wscale);
              isum += wi * xq[tt * cols + c];
            }
            exact += wscale * xd[tt * cols / 32 + b] * static_cast<double>(isum);
            magnitude += std::abs(wscale * xd[tt * cols / 32 + b] * static_cast<double>(isum));
          }
          ASSERT_NEAR(y[tt * rows + r], exact, 1e-5 * magnitude + 1e-6)
              << runtime::dtype_name(t) << " " << runtime::isa_name(isa) << " row " << r << " token " << tt;
          // Against the float product with the dequantised weights: only the activations' rounding.
          double fl = bias[r], bound = 0;
          for (int64_t c = 0; c < cols; ++c) {
            fl += static_cast<double>(q.dequantized[r * cols + c]) * x[tt * cols + c];
            bound += std::abs(q.dequantized[r * cols + c]) * 0.5 * xd[tt * cols / 32 + c / 32];
          }
          ASSERT_LE(std::abs(y[tt * rows + r] - fl), bound * (1 + 1e-4) + 1e-5) << runtime::dtype_name(t) << " row " << r;
          // A row gives the same bits whatever the number of tokens in the call.
          ASSERT_EQ(y[tt * rows + r], y1[tt * rows + r]) << runtime::isa_name(isa);
        }
      // Rows split as the thread pool splits them, and accumulate = true, give the same bits.
      std::vector<float> ys(T * rows, 0.0f);
      runtime::matmul(W, bias.data(), x.data(), cols, T, ys.data(), rows, 0, 5, true);
      runtime::matmul(W, bias.data(), x.data(), cols, T, ys.data(), rows, 5, rows, true);
      EXPECT_EQ(ys, y) << runtime::isa_name(isa);
      results.push_back(y);
    }
    for (size_t i = 1; i < results.size(); ++i) EXPECT_EQ(results[i], results[0]) << "portable and AVX2 differ";
  }
}

TEST(RuntimeBlocks, TheVectorActivationQuantiserGivesTheScalarOnesBits) {
  if (runtime::detected_isa() != Isa::kAvx2) GTEST_SKIP() << "no AVX2 on this CPU";
  std::mt19937 rng(9);
  const int64_t T = 5, K = 96, ld = 100;
  std::vector<float> x = normal(rng, T * ld, 3);
  for (int k = 0; k < 32; ++k) x[k] = (k - 16) * 0.5f;  // ties: x / d lands on k.5 for d = 8 / 127 ... and zeros
  for (int k = 32; k < 64; ++k) x[k] = 0;                 // a zero block: scale 0, every q 0
  x[ld + 3] = -1e30f;                                      // one huge value: the rest round to 0
  std::vector<int8_t> q(T * K);
  std::vector<float> d(T * K / 32);
  runtime::detail::quantize_activations(x.data(), ld, T, K, q.data(), d.data());
  runtime::detail::QuantizedActivations v;
  v.quantize(x.data(), ld, T, K, /*avx2=*/true);
  EXPECT_EQ(std::vector<int8_t>(v.q.begin(), v.q.begin() + T * K), q);
  EXPECT_EQ(std::vector<float>(v.d.begin(), v.d.begin() + T * K / 32), d);
  EXPECT_EQ(d[1], 0.0f);
  EXPECT_EQ(q[K + 3], -127);
}

TEST(RuntimeBlocks, QuantiseDequantiseKeepsEachValueWithinHalfAStep) {
  std::mt19937 rng(5);
  std::vector<float> w = normal(rng, 32 * 64);
  for (DType t : {DType::kQ8_0, DType::kQ4_0}) {
    Quantized q = quantize_matrix(t, w);
    for (size_t b = 0; b < w.size() / 32; ++b) {
      float amax = 0;
      for (int k = 0; k < 32; ++k) amax = std::max(amax, std::abs(w[b * 32 + k]));
      // Q8_0: half a step of amax / 127. Q4_0: steps of amax / 8 over -8..7, so a value near -m (m the
      // extreme value) is clamped to 7 steps: up to a whole step. Plus the f16 scale's rounding.
      const float err = t == DType::kQ8_0 ? 0.5f * amax / 127 : amax / 8;
      for (int k = 0; k < 32; ++k)
        ASSERT_LE(std::abs(q.dequantized[b * 32 + k] - w[b * 32 + k]), err + amax * 1e-3f)
            << runtime::dtype_name(t) << " block " << b;
    }
  }
  std::vector<float> bad(32, 1.0f);
  bad[3] = NAN;
  std::vector<uint8_t> out(34);
  EXPECT_RAD_ERROR(io::quantize(io::GgmlType::kQ8_0, bad.data(), 32, out.data()), "value 3 is nan");
  EXPECT_RAD_ERROR(io::quantize(io::GgmlType::kQ8_0, bad.data(), 31, out.data()), "whole blocks of 32");
  EXPECT_RAD_ERROR(io::quantize(io::GgmlType::kQ4_K, bad.data(), 32, out.data()), "cannot write Q4_K");
}

}  // namespace
}  // namespace rad::test
