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

io::GgmlType ggml_of(DType t) { return *io::ggml_type_from_name(runtime::dtype_name(t)); }

struct Quantized {
  std::vector<uint8_t> bytes;
  std::vector<float> dequantized;
};

Quantized quantize_matrix(DType t, const std::vector<float>& w) {
  Quantized q;
  q.bytes.resize(w.size() / runtime::dtype_block_elems(t) * runtime::dtype_block_bytes(t));
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

// Q5_0, Q4_K and Q6_K weights (random bytes with finite scales; every byte pattern is a valid block)
// against the float product of their dequantisation (rad/io/gguf_dequant, itself checked against
// PyPI's gguf) with the activations as the kernel quantised them, in double; and the same bits for
// every ISA, token count and row split.
TEST(RuntimeBlocks, SubBlockTypesMatchTheirDequantisationInEveryIsaAndBatchSize) {
  IsaGuard guard;
  std::mt19937 rng(5);
  std::uniform_int_distribution<int> byte(0, 255);
  struct Case {
    DType t;
    io::GgmlType g;
    int64_t cols;
    std::vector<int> scale_offsets;  // fp16 scales within a block
  };
  for (const Case& c : {Case{DType::kQ5_0, io::GgmlType::kQ5_0, 160, {0}},
                        Case{DType::kQ4_K, io::GgmlType::kQ4_K, 512, {0, 2}},
                        Case{DType::kQ6_K, io::GgmlType::kQ6_K, 512, {208}}}) {
    const int64_t rows = 13, T = 6, cols = c.cols;
    const size_t bb = runtime::dtype_block_bytes(c.t);
    const int64_t per_block = runtime::dtype_block_elems(c.t);
    std::vector<uint8_t> bytes(rows * cols / per_block * bb);
    for (auto& v : bytes) v = static_cast<uint8_t>(byte(rng));
    std::normal_distribution<float> nd(0, 0.02f);
    for (size_t blk = 0; blk < bytes.size() / bb; ++blk)
      for (int off : c.scale_offsets) {
        const uint16_t h = runtime::f32_to_f16(nd(rng));
        std::memcpy(bytes.data() + blk * bb + off, &h, 2);
      }
    std::vector<float> deq(rows * cols);
    io::dequantize(c.g, bytes.data(), deq.size(), deq.data());
    std::vector<float> x = normal(rng, T * cols, 2), bias = normal(rng, rows);
    std::vector<int8_t> xq(T * cols);
    std::vector<float> xd(T * cols / 32);
    runtime::detail::quantize_activations(x.data(), cols, T, cols, xq.data(), xd.data());
    runtime::Mat W{bytes.data(), c.t, rows, cols};
    std::vector<std::vector<float>> results;
    for (Isa isa : isas()) {
      runtime::set_isa(isa);
      const std::string what = std::string(runtime::dtype_name(c.t)) + " " + runtime::isa_name(isa);
      std::vector<float> y(T * rows), y1(T * rows);
      runtime::matmul(W, bias.data(), x.data(), cols, T, y.data(), rows, 0, rows, false);
      for (int64_t tt = 0; tt < T; ++tt)
        runtime::matmul(W, bias.data(), x.data() + tt * cols, cols, 1, y1.data() + tt * rows, rows, 0, rows, false);
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t tt = 0; tt < T; ++tt) {
          // The dequantised weights times the quantised activations, in double: the kernel's sum up
          // to float32 rounding (its integer block sums are exact).
          double exact = bias[r], magnitude = std::abs(bias[r]), fl = bias[r], bound = 0;
          for (int64_t k = 0; k < cols; ++k) {
            const double w = deq[r * cols + k], a = static_cast<double>(xq[tt * cols + k]) * xd[tt * cols / 32 + k / 32];
            exact += w * a;
            magnitude += std::abs(w * a);
            fl += w * x[tt * cols + k];
            bound += std::abs(w) * 0.5 * xd[tt * cols / 32 + k / 32];
          }
          ASSERT_NEAR(y[tt * rows + r], exact, 2e-5 * magnitude + 1e-6) << what << " row " << r << " token " << tt;
          ASSERT_LE(std::abs(y[tt * rows + r] - fl), bound * (1 + 1e-4) + 2e-5 * magnitude + 1e-5) << what;
          ASSERT_EQ(y[tt * rows + r], y1[tt * rows + r]) << what << " row " << r << " token " << tt;
        }
      std::vector<float> ys(T * rows, 0.0f);
      runtime::matmul(W, bias.data(), x.data(), cols, T, ys.data(), rows, 0, 5, true);
      runtime::matmul(W, bias.data(), x.data(), cols, T, ys.data(), rows, 5, rows, true);
      EXPECT_EQ(ys, y) << what;
      results.push_back(y);
    }
    for (size_t i = 1; i < results.size(); ++i)
      EXPECT_EQ(results[i], results[0]) << runtime::dtype_name(c.t) << ": portable and AVX2 differ";
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
  v.quantize(x.data(), ld, T, K, /*avx2=*/true, /*with_sums=*/false);
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
  EXPECT_RAD_ERROR(io::quantize(io::GgmlType::kQ4_1, bad.data(), 32, out.data()), "cannot write Q4_1");
  EXPECT_RAD_ERROR(io::quantize(io::GgmlType::kQ4_K, bad.data(), 32, out.data()), "whole blocks of 256 (Q4_K)");
}

// Q5_0 by the format's reference rule (within a step of amax / 16, as Q4_0's amax / 8), Q4_K and Q6_K by
// the simpler rule of gguf_quantize.h: their error against Gaussian weights, as a share of the weights'
// RMS, near what the step sizes give (Q4_K ~ range / 15 per 32 values: ~0.08; Q6_K ~ amax / 32 per 16
// values: ~0.02), and every value within a step of its sub-block (the scales' rounding included).
TEST(RuntimeBlocks, Q5_0Q4_KAndQ6_KRoundTripWithinTheirSteps) {
  std::mt19937 rng(8);
  std::vector<float> w = normal(rng, 256 * 32);
  for (int k = 0; k < 32; ++k) w[512 + k] = 0;  // a zero sub-block
  for (int k = 0; k < 32; ++k) w[1024 + k] = 0.5f + 0.01f * k;  // one all positive (Q4_K's min 0)
  for (auto [t, max_rms] : std::vector<std::pair<DType, double>>{{DType::kQ5_0, 0.06}, {DType::kQ4_K, 0.10},
                                                                  {DType::kQ6_K, 0.03}}) {
    Quantized q = quantize_matrix(t, w);
    double se = 0, ss = 0;
    const int sub = t == DType::kQ6_K ? 16 : 32;
    for (size_t b = 0; b < w.size() / sub; ++b) {
      float lo = 0, hi = 0, amax = 0;
      for (int k = 0; k < sub; ++k) {
        lo = std::min(lo, w[b * sub + k]);
        hi = std::max(hi, w[b * sub + k]);
        amax = std::max(amax, std::abs(w[b * sub + k]));
      }
      // One step of the sub-block, with room for the 6-bit (Q4_K) or 8-bit (Q6_K) scale's rounding
      // against the super-block's largest; Q5_0 as Q4_0.
      const float step = t == DType::kQ5_0 ? amax / 16 : t == DType::kQ4_K ? (hi - lo) / 15 : amax / 32;
      const float super = t == DType::kQ5_0 ? 0.0f : 4.0f / 63 * 4;  // ~4 sigma, a 6-bit step of it
      for (int k = 0; k < sub; ++k) {
        const float e = std::abs(q.dequantized[b * sub + k] - w[b * sub + k]);
        ASSERT_LE(e, step + super + amax * 1e-3f) << runtime::dtype_name(t) << " sub-block " << b << " value " << k;
        se += static_cast<double>(e) * e;
        ss += static_cast<double>(w[b * sub + k]) * w[b * sub + k];
      }
    }
    EXPECT_LT(std::sqrt(se / ss), max_rms) << runtime::dtype_name(t);
    EXPECT_GT(std::sqrt(se / ss), 0.0) << runtime::dtype_name(t);
  }
}

}  // namespace
}  // namespace rad::test
