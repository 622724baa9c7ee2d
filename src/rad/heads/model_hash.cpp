#include "rad/heads/model_hash.h"

#include <fmt/format.h>

#include "rad/io/hf_config.h"

namespace rad {
namespace {
struct Fnv1a {
  uint64_t h = 1469598103934665603ull;
  void add(const void* data, size_t n) {
    const auto* p = static_cast<const uint8_t*>(data);
    for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
  }
  void add(const std::string& s) { add(s.data(), s.size()); }
};
}  // namespace

std::string model_hash(CausalLM& model) {
  Fnv1a f;
  const ModelConfig& c = model->config();
  f.add(fmt::format("{} {} {} {} {} {} {} {}", c.architecture, c.n_vocab, c.d_model, c.n_layer, c.n_head, c.n_head_kv,
                    c.d_head, c.d_ff));
  for (const auto& item : model->named_parameters()) {
    at::Tensor t = item.value().detach().to(at::kFloat).contiguous();
    f.add(item.key());
    f.add(c10::str(t.sizes()));
    f.add(t.data_ptr(), t.numel() * sizeof(float));
  }
  return fmt::format("fnv1a64:{:016x}", f.h);
}

}  // namespace rad
