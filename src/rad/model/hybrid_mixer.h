// The per-head hybrid token mixer (docs/DESIGN.md section 4): in one layer, the plan's kept query heads are
// the teacher's softmax attention heads, every other head is a discrete Mamba-2 head; all head
// outputs, in the teacher's head order, go through the teacher's o_proj.
//
// Checkpoint keys under model.layers.{i}.self_attn.:
//   q_proj.{weight,bias}   [n_kept * d_head, d_model]     rows of the kept heads, ascending head
//   k_proj/v_proj.*        [n_kept_groups * d_head, ...]  rows of the kept KV groups, ascending
//                          (q/k/v are absent in a layer that keeps no head)
//   o_proj.*               the teacher's, unchanged (all n_head heads)
//   ssm.x_proj.*           [H_s * P, d_model]   (P = d_head)      SSM heads in ascending head order
//   ssm.B_proj.*           [H_s * N, d_model]   (N = d_state)
//   ssm.C_proj.*           [H_s * N, d_model]
//   ssm.a_proj.{weight,bias} [H_s, d_model]     decay logits a_t; alpha_t = exp(-softplus(a_t))
//   ssm.D                  [H_s]                skip
//   ssm.conv_weight        [H_s * (P + 2N), conv_width]  (with conv) depthwise, over [x | B | C]
//   ssm.z_proj.{weight,bias} [H_s * P, d_model] (with gate)
//   (ssm.* is absent in a layer that keeps every head: then the layer is exactly the teacher's.)
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/linear.h>

#include <memory>
#include <vector>

#include "rad/model/causal_lm.h"
#include "rad/model/hybrid_config.h"
#include "rad/model/layers.h"

namespace rad {

// Decode state of one hybrid layer.
struct HybridCache : LayerCache {
  at::Tensor k, v;        // [B, n_kept_groups, S, d_head] (kept KV groups only; after RoPE)
  at::Tensor ssm_state;   // [B, H_s, P, N] float32
  at::Tensor conv_state;  // [B, conv_width - 1, H_s * (P + 2N)] float32: the last inputs of the conv
  int64_t bytes() const override;
  int64_t kv_bytes() const;
  int64_t ssm_bytes() const;
};

// The SSM heads of one layer, computed together as [B, T, H_s, ...].
class SsmHeadsImpl : public torch::nn::Module {
 public:
  SsmHeadsImpl(const ModelConfig& config, const SsmOptions& options, int64_t n_heads);
  // u [B, T, d_model] -> y [B, T, H_s, P] in u's dtype. With a cache, continues its state (a
  // single token runs the step recurrence, more tokens ssd_sequence from the cached state).
  at::Tensor forward(const at::Tensor& u, HybridCache* cache);
  // Projections and gate inputs in float32, before the scan (used by forward and tests).
  torch::nn::Linear x_proj{nullptr}, B_proj{nullptr}, C_proj{nullptr}, a_proj{nullptr}, z_proj{nullptr};
  at::Tensor D, conv_weight;
  int64_t n_heads, d_head, d_state;
  SsmOptions options;
};
TORCH_MODULE(SsmHeads);

class HybridMixer : public Mixer {
 public:
  HybridMixer(const HybridConfig& config, int64_t layer);
  at::Tensor forward(const at::Tensor& x, MixerContext& ctx) override;
  std::unique_ptr<LayerCache> new_cache() const override;

  torch::nn::Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, o_proj{nullptr};
  SsmHeads ssm{nullptr};
  std::vector<int64_t> kept_heads;       // ascending query-head indices
  std::vector<int64_t> kept_groups;      // ascending KV groups they use
  std::vector<int64_t> ssm_heads;        // the other heads, ascending
  int64_t n_head, n_head_kv, d_head;

 private:
  at::Tensor head_to_local_group_;  // [n_kept] index into kept_groups, int64
  at::Tensor head_order_;           // [n_head]: position of head h in cat(kept, ssm)
  bool uniform_groups_ = false;     // every kept group has the same number of kept heads, contiguous
};

// A CausalLM whose every layer is a HybridMixer for `config`.
CausalLM make_hybrid_lm(const HybridConfig& config);

}  // namespace rad
