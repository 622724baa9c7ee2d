#include "rad/heads/model_hash.h"

#include <algorithm>

#include <fmt/format.h>

#include "rad/core/fnv1a.h"
#include "rad/io/hf_config.h"

namespace rad {

std::string model_hash(CausalLM& model) {
  Fnv1a f;
  const ModelConfig& c = model->config();
  f.add(fmt::format("{} {} {} {} {} {} {} {}", c.architecture, c.n_vocab, c.d_model, c.n_layer, c.n_head, c.n_head_kv,
                    c.d_head, c.d_ff));
  // The float32 bytes, whatever dtype the weights are held in (a bf16 checkpoint held as bf16 or
  // as a float32 copy hashes the same), converted a chunk at a time: no float32 copy of a large
  // tensor (an embedding matrix) next to the model.
  constexpr int64_t kChunk = 1 << 20;
  for (const auto& item : model->named_parameters()) {
    at::Tensor t = item.value().detach().contiguous().view(-1);
    f.add(item.key());
    f.add(c10::str(item.value().sizes()));
    for (int64_t i = 0; i < t.numel(); i += kChunk) {
      at::Tensor c = t.narrow(0, i, std::min(kChunk, t.numel() - i)).to(at::kCPU, at::kFloat).contiguous();
      f.add(c.data_ptr(), c.numel() * sizeof(float));
    }
  }
  return fmt::format("fnv1a64:{:016x}", f.h);
}

}  // namespace rad
