#include "rad/model/rope.h"

#include <cmath>

#include "rad/model/rope_frequencies.h"

namespace rad {

at::Tensor rope_inv_freq(const ModelConfig& config) {
  const std::vector<float> inv_freq = rope_inverse_frequencies(config);  // shared with the runtime
  return at::tensor(inv_freq, at::kFloat);
}

RopeTables rope_tables(const at::Tensor& inv_freq, const at::Tensor& positions, at::ScalarType dtype) {
  at::Tensor freqs = positions.to(at::kFloat).unsqueeze(1) * inv_freq.to(positions.device()).unsqueeze(0);  // [T, D/2]
  at::Tensor emb = at::cat({freqs, freqs}, -1);                                                               // [T, D]
  return {emb.cos().to(dtype), emb.sin().to(dtype)};
}

at::Tensor apply_rope(const at::Tensor& x, const RopeTables& tables) {
  const int64_t half = x.size(-1) / 2;
  at::Tensor x1 = x.narrow(-1, 0, half);
  at::Tensor x2 = x.narrow(-1, half, half);
  at::Tensor rotated = at::cat({-x2, x1}, -1);
  at::Tensor cos = tables.cos.unsqueeze(0).unsqueeze(2);  // [1, T, 1, D]
  at::Tensor sin = tables.sin.unsqueeze(0).unsqueeze(2);
  return x * cos + rotated * sin;
}

}  // namespace rad
