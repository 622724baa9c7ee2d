#include "rad/distill/shrink.h"

#include <torch/nn/module.h>

#include "rad/core/error.h"
#include "rad/model/hybrid_mixer.h"

namespace rad {
namespace {

// [N*H rows of W | b] for head h -> [N, d (+1)]
at::Tensor head_block(const at::Tensor& weight, const at::Tensor& bias, int64_t h, int64_t N) {
  at::Tensor w = weight.narrow(0, h * N, N).to(at::kDouble);
  if (bias.defined()) w = at::cat({w, bias.narrow(0, h * N, N).to(at::kDouble).unsqueeze(1)}, 1);
  return w;
}

}  // namespace

io::HybridModel shrink_state(io::HybridModel& src, int64_t n_new, const std::string& rule_in) {
  const int64_t N = src.config.ssm.d_state;
  RAD_CHECK(n_new >= 1 && n_new <= N, "shrink: --d-state must be in [1, {}] (the model's d_state), got {}", N, n_new);
  RAD_CHECK(rule_in == "svd" || rule_in == "truncate", "shrink: --rule must be svd or truncate, got \"{}\"", rule_in);
  std::string rule = src.config.ssm.conv ? "truncate" : rule_in;
  io::HybridModel out;
  out.config = src.config;
  out.config.ssm.d_state = n_new;
  out.config.validate("shrink");
  out.model = make_hybrid_lm(out.config);
  out.model->to(src.model->dtype());
  at::NoGradGuard no_grad;
  auto old_params = src.model->named_parameters();
  auto new_params = out.model->named_parameters();
  for (auto& item : new_params) {
    const std::string& name = item.key();
    at::Tensor* old = old_params.find(name);
    RAD_CHECK(old != nullptr, "shrink: parameter {} missing in the source model", name);
    if (old->sizes() == item.value().sizes()) item.value().copy_(*old);
  }
  const int64_t L = out.config.base.n_layer, P = out.config.base.d_head;
  for (int64_t l = 0; l < L; ++l) {
    std::string prefix = "model.layers." + std::to_string(l) + ".self_attn.ssm.";
    at::Tensor* wb = new_params.find(prefix + "B_proj.weight");
    if (wb == nullptr) continue;  // a layer keeping every head has no SSM
    const int64_t H = wb->size(0) / n_new;
    at::Tensor ob = old_params[prefix + "B_proj.weight"], oc = old_params[prefix + "C_proj.weight"];
    at::Tensor* bb = new_params.find(prefix + "B_proj.bias");
    at::Tensor* bc = new_params.find(prefix + "C_proj.bias");
    at::Tensor obb = bb ? old_params[prefix + "B_proj.bias"] : at::Tensor();
    at::Tensor obc = bc ? old_params[prefix + "C_proj.bias"] : at::Tensor();
    at::Tensor& nc = new_params[prefix + "C_proj.weight"];
    for (int64_t h = 0; h < H; ++h) {
      at::Tensor new_b, new_c;  // [n_new, d (+1)]
      if (rule == "truncate") {
        new_b = head_block(ob, obb, h, N).narrow(0, 0, n_new);
        new_c = head_block(oc, obc, h, N).narrow(0, 0, n_new);
      } else {
        at::Tensor B = head_block(ob, obb, h, N), C = head_block(oc, obc, h, N);
        at::Tensor M = at::matmul(C.t(), B);  // [d', d']: the bilinear form C_t . B_s
        auto [U, S, Vh] = at::linalg_svd(M, /*full_matrices=*/false);
        at::Tensor root = S.narrow(0, 0, n_new).sqrt().unsqueeze(1);  // [n_new, 1]
        new_c = root * U.narrow(1, 0, n_new).t();
        new_b = root * Vh.narrow(0, 0, n_new);
      }
      const int64_t d = wb->size(1);
      wb->narrow(0, h * n_new, n_new).copy_(new_b.narrow(1, 0, d));
      nc.narrow(0, h * n_new, n_new).copy_(new_c.narrow(1, 0, d));
      if (bb) bb->narrow(0, h * n_new, n_new).copy_(new_b.select(1, d));
      if (bc) bc->narrow(0, h * n_new, n_new).copy_(new_c.select(1, d));
    }
    if (at::Tensor* conv = new_params.find(prefix + "conv_weight")) {
      // Channels [x (H*P) | B (H*N) | C (H*N)]: keep x, and the first n_new state channels per head.
      at::Tensor oconv = old_params[prefix + "conv_weight"];
      conv->narrow(0, 0, H * P).copy_(oconv.narrow(0, 0, H * P));
      for (int64_t h = 0; h < H; ++h) {
        conv->narrow(0, H * P + h * n_new, n_new).copy_(oconv.narrow(0, H * P + h * N, n_new));
        conv->narrow(0, H * P + H * n_new + h * n_new, n_new).copy_(oconv.narrow(0, H * P + H * N + h * N, n_new));
      }
    }
  }
  out.model->eval();
  return out;
}

}  // namespace rad
