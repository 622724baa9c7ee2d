// RoPE inverse frequencies with the config's rope_scaling (none, "linear", "llama3"), in plain C++:
// the one definition that the libtorch model (rad/model/rope.cpp) and the libtorch-free runtime
// (rad/runtime/engine.cpp) both use, so their rotations agree bit for bit.
#pragma once

#include <vector>

#include "rad/model/config.h"

namespace rad {

// [d_head / 2] inverse frequencies 1 / theta^(2i / d_head), then scaled. Each step is rounded to
// float32 as Hugging Face's float32 tensor arithmetic rounds it (_compute_default_rope_parameters,
// _compute_llama3_parameters): "linear" divides every frequency by `factor`; "llama3" divides the
// long wavelengths (> original context / low_freq_factor) by `factor`, keeps the short ones
// (< original context / high_freq_factor) and interpolates the band between.
std::vector<float> rope_inverse_frequencies(const ModelConfig& config);

}  // namespace rad
