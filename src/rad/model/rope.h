// Rotary position embeddings, Hugging Face "rotate_half" convention (the two halves of each head
// vector form the rotated pairs), with the `linear` and `llama3` frequency scalings.
#pragma once

#include <ATen/ATen.h>

#include "rad/model/config.h"

namespace rad {

// Inverse frequencies [d_head / 2] (float32), with the config's rope_scaling applied.
at::Tensor rope_inv_freq(const ModelConfig& config);

struct RopeTables {
  at::Tensor cos;  // [T, d_head], in the compute dtype
  at::Tensor sin;  // [T, d_head]
};

// Tables for absolute positions [T] (int64), computed in float32 and cast to `dtype` (as HF does).
RopeTables rope_tables(const at::Tensor& inv_freq, const at::Tensor& positions, at::ScalarType dtype);

// x: [B, T, H, D] -> x * cos + rotate_half(x) * sin.
at::Tensor apply_rope(const at::Tensor& x, const RopeTables& tables);

}  // namespace rad
