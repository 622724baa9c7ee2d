#include "rad/model/rope_frequencies.h"

#include <cmath>

namespace rad {

std::vector<float> rope_inverse_frequencies(const ModelConfig& c) {
  const int64_t half = c.d_head / 2;
  std::vector<float> inv_freq(static_cast<size_t>(half));
  const RopeScaling& rs = c.rope_scaling;
  // float32 operands, as a tensor op with a Python float scalar computes them.
  const float factor = static_cast<float>(rs.factor);
  const float low = static_cast<float>(rs.low_freq_factor);
  const float old_ctx = static_cast<float>(rs.original_max_position_embeddings);
  const float low_wavelen = static_cast<float>(static_cast<double>(rs.original_max_position_embeddings) / rs.low_freq_factor);
  const float high_wavelen = static_cast<float>(static_cast<double>(rs.original_max_position_embeddings) / rs.high_freq_factor);
  const float band = static_cast<float>(rs.high_freq_factor - rs.low_freq_factor);
  for (int64_t i = 0; i < half; ++i) {
    // arange(0, d_head, 2) in int64, then float32 division and power.
    const float exponent = static_cast<float>(2 * i) / static_cast<float>(c.d_head);
    float inv = 1.0f / std::pow(static_cast<float>(c.rope_theta), exponent);
    if (rs.type == "linear") {
      inv = inv / factor;
    } else if (rs.type == "llama3") {
      const float wavelen = static_cast<float>(2.0 * M_PI) / inv;
      const float scaled = wavelen > low_wavelen ? inv / factor : inv;
      if (wavelen >= high_wavelen && wavelen <= low_wavelen) {
        const float smooth = (old_ctx / wavelen - low) / band;
        inv = (1.0f - smooth) * scaled / factor + smooth * scaled;
      } else {
        inv = scaled;
      }
    }
    inv_freq[static_cast<size_t>(i)] = inv;
  }
  return inv_freq;
}

}  // namespace rad
