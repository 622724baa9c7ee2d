// Building blocks of the Llama-family decoder. Member names mirror the Hugging Face checkpoint
// keys, so `named_parameters()` of the assembled model is the checkpoint map.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/linear.h>

#include <functional>
#include <memory>
#include <vector>

#include "rad/model/config.h"
#include "rad/model/rope.h"

namespace rad {

// RMSNorm as in HF Llama: normalise in float32, cast back, then scale.
class RMSNormImpl : public torch::nn::Module {
 public:
  RMSNormImpl(int64_t dim, double eps);
  at::Tensor forward(const at::Tensor& x);
  at::Tensor weight;
  double eps;
};
TORCH_MODULE(RMSNorm);

// down_proj(silu(gate_proj(x)) * up_proj(x))
class MLPImpl : public torch::nn::Module {
 public:
  explicit MLPImpl(const ModelConfig& config);
  at::Tensor forward(const at::Tensor& x);
  torch::nn::Linear gate_proj{nullptr}, up_proj{nullptr}, down_proj{nullptr};
};
TORCH_MODULE(MLP);

// Hooks the later stages need. All optional.
struct ForwardHooks {
  // Called with the per-head outputs z [B, T, n_head, d_head] of layer `layer`, right before
  // o_proj; returns the (possibly modified) z. Used for head ablation (zero or mean).
  std::function<at::Tensor(int64_t layer, const at::Tensor& z)> head_output;
  // When set, resized to n_layer and filled with the residual stream entering / leaving each layer
  // that runs ([B, T, d_model]).
  std::vector<at::Tensor>* residual_in = nullptr;
  std::vector<at::Tensor>* residual_out = nullptr;
};

// Per-layer decode state. Each mixer kind defines its own (KV for attention, SSM state later).
struct LayerCache {
  virtual ~LayerCache() = default;
  virtual int64_t bytes() const = 0;  // bytes the cache tensors hold
};

struct AttentionCache : LayerCache {
  at::Tensor k;  // [B, n_head_kv, S, d_head], after RoPE
  at::Tensor v;  // [B, n_head_kv, S, d_head]
  int64_t bytes() const override;
};

// Everything a token mixer needs for one forward call.
struct MixerContext {
  int64_t layer = 0;
  int64_t past_length = 0;         // tokens already in the cache
  const RopeTables* rope = nullptr;  // tables for the positions of the current tokens
  const at::Tensor* mask = nullptr;  // [T, past + T] bool, true where attention is allowed
  LayerCache* cache = nullptr;       // null: no caching
  const ForwardHooks* hooks = nullptr;
};

// A token mixer: softmax attention here; the hybrid adds per-head attention/SSM mixers.
class Mixer : public torch::nn::Module {
 public:
  virtual at::Tensor forward(const at::Tensor& x, MixerContext& ctx) = 0;
  virtual std::unique_ptr<LayerCache> new_cache() const = 0;
};

// Grouped-query causal self-attention with RoPE (q_proj, k_proj, v_proj, o_proj).
class Attention : public Mixer {
 public:
  explicit Attention(const ModelConfig& config);
  at::Tensor forward(const at::Tensor& x, MixerContext& ctx) override;
  std::unique_ptr<LayerCache> new_cache() const override;
  torch::nn::Linear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, o_proj{nullptr};
  int64_t n_head, n_head_kv, d_head;
};

// Scaled dot-product attention for GQA without materialising repeated K/V.
// q: [B, T, H, D]; k, v: [B, Hkv, S, D]; mask: [T, S] bool. Returns [B, T, H, D].
// Softmax runs in float32 and is cast back to q's dtype (HF eager semantics). Float32 CPU tensors
// with a mask whose rows each allow one contiguous range of keys (causal, sliding window) take a
// fused kernel (forward and backward, no T x S tensors); everything else the reference below.
at::Tensor grouped_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& mask);
// The same as libtorch ops: masked T x S scores, softmax, matmul.
at::Tensor grouped_attention_reference(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                       const at::Tensor& mask);

// Pre-norm decoder block: x + mixer(norm(x)), then + mlp(norm(x)).
class DecoderLayerImpl : public torch::nn::Module {
 public:
  DecoderLayerImpl(const ModelConfig& config, std::shared_ptr<Mixer> mixer);
  at::Tensor forward(const at::Tensor& x, MixerContext& ctx);
  std::shared_ptr<Mixer> self_attn;
  MLP mlp{nullptr};
  RMSNorm input_layernorm{nullptr}, post_attention_layernorm{nullptr};
};
TORCH_MODULE(DecoderLayer);

}  // namespace rad
