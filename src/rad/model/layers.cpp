#include "rad/model/layers.h"

#include <torch/nn/functional/activation.h>

#include <cmath>

#include "rad/core/error.h"

namespace rad {

RMSNormImpl::RMSNormImpl(int64_t dim, double eps_) : eps(eps_) {
  weight = register_parameter("weight", at::ones({dim}));
}

at::Tensor RMSNormImpl::forward(const at::Tensor& x) {
  at::Tensor h = x.to(at::kFloat);
  at::Tensor variance = h.pow(2).mean(-1, /*keepdim=*/true);
  h = h * at::rsqrt(variance + eps);
  return weight * h.to(x.scalar_type());
}

MLPImpl::MLPImpl(const ModelConfig& c) {
  auto opts = [&](int64_t in, int64_t out) { return torch::nn::LinearOptions(in, out).bias(c.mlp_bias); };
  gate_proj = register_module("gate_proj", torch::nn::Linear(opts(c.d_model, c.d_ff)));
  up_proj = register_module("up_proj", torch::nn::Linear(opts(c.d_model, c.d_ff)));
  down_proj = register_module("down_proj", torch::nn::Linear(opts(c.d_ff, c.d_model)));
}

at::Tensor MLPImpl::forward(const at::Tensor& x) {
  return down_proj->forward(at::silu(gate_proj->forward(x)) * up_proj->forward(x));
}

int64_t AttentionCache::bytes() const {
  int64_t total = 0;
  if (k.defined()) total += k.numel() * k.element_size();
  if (v.defined()) total += v.numel() * v.element_size();
  return total;
}

Attention::Attention(const ModelConfig& c) : n_head(c.n_head), n_head_kv(c.n_head_kv), d_head(c.d_head) {
  auto opts = [](int64_t in, int64_t out, bool bias) { return torch::nn::LinearOptions(in, out).bias(bias); };
  q_proj = register_module("q_proj", torch::nn::Linear(opts(c.d_model, c.n_head * c.d_head, c.qkv_bias)));
  k_proj = register_module("k_proj", torch::nn::Linear(opts(c.d_model, c.n_head_kv * c.d_head, c.qkv_bias)));
  v_proj = register_module("v_proj", torch::nn::Linear(opts(c.d_model, c.n_head_kv * c.d_head, c.qkv_bias)));
  o_proj = register_module("o_proj", torch::nn::Linear(opts(c.n_head * c.d_head, c.d_model, c.o_bias)));
}

std::unique_ptr<LayerCache> Attention::new_cache() const { return std::make_unique<AttentionCache>(); }

at::Tensor grouped_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& mask) {
  const int64_t B = q.size(0), T = q.size(1), H = q.size(2), D = q.size(3);
  const int64_t Hkv = k.size(1), S = k.size(2), G = H / Hkv;
  // [B, T, H, D] -> [B, Hkv, G, T, D]: query heads of one KV group share its keys and values.
  at::Tensor qg = q.transpose(1, 2).reshape({B, Hkv, G, T, D});
  at::Tensor scores = at::matmul(qg, k.unsqueeze(2).transpose(-1, -2)) / std::sqrt(static_cast<double>(D));
  scores = scores.to(at::kFloat).masked_fill(mask.logical_not(), -std::numeric_limits<float>::infinity());
  at::Tensor probs = at::softmax(scores, -1).to(q.scalar_type());  // [B, Hkv, G, T, S]
  at::Tensor out = at::matmul(probs, v.unsqueeze(2));               // [B, Hkv, G, T, D]
  (void)S;
  return out.reshape({B, H, T, D}).transpose(1, 2);                 // [B, T, H, D]
}

at::Tensor Attention::forward(const at::Tensor& x, MixerContext& ctx) {
  const int64_t B = x.size(0), T = x.size(1);
  at::Tensor q = q_proj->forward(x).view({B, T, n_head, d_head});
  at::Tensor k = k_proj->forward(x).view({B, T, n_head_kv, d_head});
  at::Tensor v = v_proj->forward(x).view({B, T, n_head_kv, d_head});
  q = apply_rope(q, *ctx.rope);
  k = apply_rope(k, *ctx.rope).transpose(1, 2);  // [B, Hkv, T, D]
  v = v.transpose(1, 2);
  if (ctx.cache != nullptr) {
    auto* cache = static_cast<AttentionCache*>(ctx.cache);
    if (cache->k.defined()) {
      k = at::cat({cache->k, k}, 2);
      v = at::cat({cache->v, v}, 2);
    }
    cache->k = k;
    cache->v = v;
  }
  at::Tensor z = grouped_attention(q, k, v, *ctx.mask);  // [B, T, H, D]
  if (ctx.hooks != nullptr && ctx.hooks->head_output) z = ctx.hooks->head_output(ctx.layer, z);
  return o_proj->forward(z.reshape({B, T, n_head * d_head}));
}

DecoderLayerImpl::DecoderLayerImpl(const ModelConfig& c, std::shared_ptr<Mixer> mixer) {
  self_attn = register_module("self_attn", std::move(mixer));
  mlp = register_module("mlp", MLP(c));
  input_layernorm = register_module("input_layernorm", RMSNorm(c.d_model, c.rms_norm_eps));
  post_attention_layernorm = register_module("post_attention_layernorm", RMSNorm(c.d_model, c.rms_norm_eps));
}

at::Tensor DecoderLayerImpl::forward(const at::Tensor& x, MixerContext& ctx) {
  at::Tensor h = x + self_attn->forward(input_layernorm->forward(x), ctx);
  return h + mlp->forward(post_attention_layernorm->forward(h));
}

}  // namespace rad
