#include "rad/distill/init_from_attention.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/core/Generator.h>

#include <algorithm>
#include <cmath>

#include "rad/core/error.h"
#include "rad/model/hybrid_mixer.h"

namespace rad {

SsmInit parse_ssm_init(const std::string& name) {
  if (name == "attention") return SsmInit::kAttention;
  if (name == "random") return SsmInit::kRandom;
  fail("unknown --ssm-init \"{}\" (expected attention or random)", name);
}

namespace {

// b with silu(b) = b * sigmoid(b) = 1 (Newton).
double silu_inverse_of_one() {
  double b = 1.3;
  for (int i = 0; i < 50; ++i) {
    double s = 1.0 / (1.0 + std::exp(-b));
    double f = b * s - 1.0, df = s + b * s * (1.0 - s);
    b -= f / df;
  }
  return b;
}

// Rows [g * d, g * d + n) of weight [out, in] (or of a bias [out]) for each index in `blocks`.
at::Tensor gather_rows(const at::Tensor& w, const std::vector<int64_t>& blocks, int64_t d, int64_t n) {
  std::vector<at::Tensor> parts;
  for (int64_t g : blocks) parts.push_back(w.narrow(0, g * d, n));
  return at::cat(parts, 0);
}

// Rows g * d + dims[i] of weight [out, in] (or bias [out]) for each block g, in that order.
at::Tensor gather_dims(const at::Tensor& w, const std::vector<int64_t>& blocks, int64_t d,
                       const std::vector<int64_t>& dims) {
  std::vector<int64_t> rows;
  for (int64_t g : blocks)
    for (int64_t i : dims) rows.push_back(g * d + i);
  return w.index_select(0, at::tensor(rows, at::kLong));
}

}  // namespace

std::vector<int64_t> ssm_state_dims(int64_t d_head, int64_t d_state) {
  RAD_CHECK(d_state >= 1 && d_state <= d_head, "d_state {} must be in [1, d_head = {}]", d_state, d_head);
  const int64_t half = d_head / 2;
  std::vector<int64_t> order;
  for (int64_t j = 0; j < half; ++j) {  // frequency theta^(-2i/d) falls with i: start at i = half - 1
    order.push_back(half - 1 - j);
    order.push_back(2 * half - 1 - j);
  }
  if (d_head % 2) order.push_back(d_head - 1);
  order.resize(d_state);
  std::sort(order.begin(), order.end());
  return order;
}

void DecayInit::validate() const {
  RAD_CHECK(dt_min > 0 && dt_max >= dt_min, "decay init: need 0 < dt_min <= dt_max, got dt_min {} and dt_max {}",
            dt_min, dt_max);
}

at::Tensor head_decay_steps(int64_t n_head, const DecayInit& decay) {
  decay.validate();
  if (n_head == 1) return at::full({1}, std::sqrt(decay.dt_min * decay.dt_max), at::kDouble);
  return at::logspace(std::log10(decay.dt_min), std::log10(decay.dt_max), n_head, 10.0, at::kDouble);
}

CausalLM convert_from_teacher(CausalLM& teacher, const HybridConfig& hc, SsmInit init, uint64_t seed,
                              const DecayInit& decay) {
  const ModelConfig& tc = teacher->config();
  const ModelConfig& c = hc.base;
  RAD_CHECK(tc.n_layer == c.n_layer && tc.n_head == c.n_head && tc.n_head_kv == c.n_head_kv && tc.d_head == c.d_head &&
                tc.d_model == c.d_model && tc.n_vocab == c.n_vocab && tc.d_ff == c.d_ff,
            "convert: the hybrid config's sizes differ from the teacher's");
  const int64_t d = c.d_head, N = hc.ssm.d_state;
  RAD_CHECK(init == SsmInit::kRandom || N <= d,
            "convert: d_state {} > d_head {}: the attention init takes B and C from the head's {} K/Q dims; use "
            "--ssm-init random or d_state <= {}",
            N, d, d, d);
  CausalLM hybrid = make_hybrid_lm(hc);
  hybrid->to(teacher->dtype());
  at::NoGradGuard no_grad;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  auto teacher_params = teacher->named_parameters();
  // 1. Everything that exists under the same name and shape: embeddings, norms, MLPs, LM head,
  //    o_proj, and q/k/v of layers that keep all heads.
  for (auto& item : hybrid->named_parameters()) {
    const at::Tensor* src = teacher_params.find(item.key());
    if (src != nullptr && src->sizes() == item.value().sizes()) item.value().copy_(*src);
  }
  const double gate_bias = silu_inverse_of_one();
  for (int64_t l = 0; l < c.n_layer; ++l) {
    auto* mixer = dynamic_cast<HybridMixer*>(hybrid->model->layer_list[l]->self_attn.get());
    auto* att = dynamic_cast<Attention*>(teacher->model->layer_list[l]->self_attn.get());
    RAD_CHECK(mixer != nullptr && att != nullptr, "convert: layer {} is not attention -> hybrid", l);
    // 2. Kept heads: their q rows and their groups' k/v rows (one K/V per kept group).
    if (!mixer->kept_heads.empty()) {
      mixer->q_proj->weight.copy_(gather_rows(att->q_proj->weight, mixer->kept_heads, d, d));
      mixer->k_proj->weight.copy_(gather_rows(att->k_proj->weight, mixer->kept_groups, d, d));
      mixer->v_proj->weight.copy_(gather_rows(att->v_proj->weight, mixer->kept_groups, d, d));
      if (c.qkv_bias) {
        mixer->q_proj->bias.copy_(gather_rows(att->q_proj->bias, mixer->kept_heads, d, d));
        mixer->k_proj->bias.copy_(gather_rows(att->k_proj->bias, mixer->kept_groups, d, d));
        mixer->v_proj->bias.copy_(gather_rows(att->v_proj->bias, mixer->kept_groups, d, d));
      }
    }
    if (mixer->ssm_heads.empty()) continue;
    // 3. SSM heads.
    auto& s = *mixer->ssm;
    const int64_t hs = static_cast<int64_t>(mixer->ssm_heads.size());
    std::vector<int64_t> groups;
    for (int64_t h : mixer->ssm_heads) groups.push_back(h / c.n_group());
    // Decay: w_a = 0; softplus(b_a) = the head's own step on the log-spaced range (see header).
    s.a_proj->weight.zero_();
    at::Tensor dt = head_decay_steps(c.n_head, decay).index_select(0, at::tensor(mixer->ssm_heads, at::kLong));
    s.a_proj->bias.copy_(at::log(at::expm1(dt)));
    if (init == SsmInit::kAttention) {
      // Per C row: 1/sqrt(d) (the attention score's scale); without the input step in the forward
      // pass also 1 - alpha_h (the EMA normalisation, see the header), constant over each head's N rows.
      const at::Tensor ema = hc.ssm.input_step ? at::ones({hs * N}, at::kDouble) : (1.0 - at::exp(-dt)).repeat_interleave(N);
      const at::Tensor scale = (ema / std::sqrt(static_cast<double>(d))).to(at::kFloat).unsqueeze(1);
      s.x_proj->weight.copy_(gather_rows(att->v_proj->weight, groups, d, d));
      const std::vector<int64_t> dims = ssm_state_dims(d, N);
      s.B_proj->weight.copy_(gather_dims(att->k_proj->weight, groups, d, dims));
      s.C_proj->weight.copy_(gather_dims(att->q_proj->weight, mixer->ssm_heads, d, dims) * scale);
      if (hc.ssm.bias) {
        if (c.qkv_bias) {
          s.x_proj->bias.copy_(gather_rows(att->v_proj->bias, groups, d, d));
          s.B_proj->bias.copy_(gather_dims(att->k_proj->bias, groups, d, dims));
          s.C_proj->bias.copy_(gather_dims(att->q_proj->bias, mixer->ssm_heads, d, dims) * scale.squeeze(1));
        } else {
          s.x_proj->bias.zero_();
          s.B_proj->bias.zero_();
          s.C_proj->bias.zero_();
        }
      }
      s.D.zero_();
    } else {
      const double std = 1.0 / std::sqrt(static_cast<double>(c.d_model));
      for (auto* lin : {&s.x_proj, &s.B_proj, &s.C_proj}) {
        auto& w = (*lin)->weight;
        w.copy_(at::normal(0.0, std, w.sizes(), gen, at::TensorOptions().dtype(at::kFloat)));
        if (hc.ssm.bias) (*lin)->bias.zero_();
      }
      s.D.fill_(1.0);
    }
    if (hc.ssm.conv) {
      s.conv_weight.zero_();
      s.conv_weight.select(1, hc.ssm.conv_width - 1).fill_(1.0);
    }
    if (hc.ssm.gate) {
      s.z_proj->weight.zero_();
      s.z_proj->bias.fill_(gate_bias);
    }
  }
  hybrid->eval();
  return hybrid;
}

}  // namespace rad
