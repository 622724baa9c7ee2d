// The Llama-family causal language model (teacher). The hybrid student reuses it with other
// mixers in some layers, so teacher, hybrid and tests share one definition.
//
// Module tree = HF checkpoint keys:
//   model.embed_tokens.weight, model.layers.{i}.(self_attn|mlp|*_layernorm).*, model.norm.weight,
//   lm_head.weight (absent when tie_word_embeddings).
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/embedding.h>

#include <memory>
#include <optional>
#include <vector>

#include "rad/model/config.h"
#include "rad/model/layers.h"

namespace rad {

// Decode state of the whole model: one LayerCache per layer plus the number of tokens seen.
struct DecodeCache {
  std::vector<std::unique_ptr<LayerCache>> layers;
  int64_t length = 0;
  int64_t bytes() const;
};

class DecoderModelImpl : public torch::nn::Module {
 public:
  DecoderModelImpl(const ModelConfig& config, const std::vector<std::shared_ptr<Mixer>>& mixers);
  torch::nn::Embedding embed_tokens{nullptr};
  torch::nn::ModuleList layers{nullptr};
  RMSNorm norm{nullptr};
  std::vector<DecoderLayer> layer_list;  // typed view of `layers`
};
TORCH_MODULE(DecoderModel);

class CausalLMImpl : public torch::nn::Module {
 public:
  // A plain Transformer: softmax attention in every layer.
  explicit CausalLMImpl(const ModelConfig& config);
  // Any mixer per layer (mixers.size() == n_layer).
  CausalLMImpl(const ModelConfig& config, const std::vector<std::shared_ptr<Mixer>>& mixers);

  // input_ids [B, T] (int64) -> logits [B, T, n_vocab]. With a cache, the tokens continue the
  // cached sequence (prefill when it is empty, step decoding after) and the cache is extended.
  // Batches are right-padded by callers: causal attention keeps padding from affecting earlier
  // positions, so read each row's logits at its own last real position.
  at::Tensor forward(const at::Tensor& input_ids, DecodeCache* cache = nullptr, const ForwardHooks* hooks = nullptr);

  // The pieces of forward, for stages that restart from a layer's cached input:
  at::Tensor embed(const at::Tensor& input_ids);  // [B, T, d_model]
  // Runs layers [begin, end) on `hidden`; `past_length` is the position of hidden's first token.
  at::Tensor run_layers(const at::Tensor& hidden, int64_t begin, int64_t end, DecodeCache* cache = nullptr,
                        const ForwardHooks* hooks = nullptr);
  at::Tensor final_logits(const at::Tensor& hidden);  // final norm + LM head

  DecodeCache new_cache() const;
  const ModelConfig& config() const { return config_; }
  at::ScalarType dtype() const;  // the parameters' (the embeddings') dtype
  at::Device device() const;  // where the weights are (the global --device once moved)

  // Weights may be held in another dtype than the forward computes in. A frozen bf16 teacher keeps
  // its memory-mapped bf16 weights (no float32 copy of the model) and computes in float32: on CPUs
  // without native bf16 matmuls (AVX2) libtorch's bf16 kernels are far slower than float32, and the
  // float32 result is exactly that of a float32 copy of the same weights. Each layer's weights are
  // converted for the duration of that layer only (one layer's copy at a time), the embedding rows
  // after the lookup, the LM head in vocabulary chunks. Only without gradients (at::NoGradGuard):
  // the converted weights are not kept for a backward pass. nullopt: compute in dtype().
  void set_compute_dtype(std::optional<at::ScalarType> dtype) { compute_dtype_ = dtype; }
  at::ScalarType compute_dtype() const { return compute_dtype_.value_or(dtype()); }

  // Activation checkpointing for training: with gradients enabled (and no cache or hooks), each
  // layer keeps only its input for the backward pass and is recomputed there, so the activations
  // of one layer are alive at a time instead of all layers' (about a third more compute). The
  // results and gradients are those of the plain forward.
  void set_activation_checkpointing(bool on) { checkpointing_ = on; }
  bool activation_checkpointing() const { return checkpointing_; }
  int64_t parameter_count() const;

  DecoderModel model{nullptr};
  torch::nn::Linear lm_head{nullptr};  // null when tied to model.embed_tokens

 private:
  ModelConfig config_;
  at::Tensor inv_freq_;  // RoPE inverse frequencies (float32), not a parameter
  std::optional<at::ScalarType> compute_dtype_;
  bool checkpointing_ = false;
};
TORCH_MODULE(CausalLM);

// For its lifetime, the parameters of `module` that are not of dtype `type` hold converted copies;
// the originals are put back on destruction. Refuses to run with gradients enabled (see
// CausalLMImpl::set_compute_dtype).
class ScopedParameterDtype {
 public:
  ScopedParameterDtype(torch::nn::Module& module, at::ScalarType type);
  ~ScopedParameterDtype();
  ScopedParameterDtype(const ScopedParameterDtype&) = delete;
  ScopedParameterDtype& operator=(const ScopedParameterDtype&) = delete;

 private:
  std::vector<std::pair<at::Tensor, at::Tensor>> saved_;  // (parameter, its original data)
};

// Boolean mask [T, past + T]: query i (absolute position past + i) may see key j iff j <= past + i
// and, with a sliding window W > 0, j > past + i - W.
at::Tensor causal_mask(int64_t past, int64_t T, int64_t sliding_window, const at::Device& device);

// Initialises a fresh model's parameters (normal(0, std) for matrices and embeddings, zero biases,
// unit norms), as for pretraining from scratch.
void init_parameters(torch::nn::Module& module, double std, uint64_t seed);

}  // namespace rad
