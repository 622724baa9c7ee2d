// Pieces shared by the training loops (pretrain, distill): AdamW set-up, bf16 autocast, losses.
#pragma once

#include <ATen/ATen.h>
#include <torch/optim/adamw.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "rad/model/causal_lm.h"

namespace rad {

// AdamW (0.9, 0.95), eps 1e-8, over the model's parameters for which `trainable(name)` is true
// (all when null); norm weights and biases get no weight decay. Parameters not selected are set to
// requires_grad(false). Param groups: [0] matrices (weight_decay), [1] norms and biases (0), and,
// when `embedding_weight_decay` is given, [2] the token embeddings and lm_head with that decay (without
// it they are matrices; the two-group layout keeps older optimizer checkpoints loadable).
std::unique_ptr<torch::optim::AdamW> make_adamw(CausalLM& model, double weight_decay, double lr,
                                                const std::function<bool(const std::string&)>& trainable = nullptr,
                                                std::optional<double> embedding_weight_decay = std::nullopt);

// Which decay group make_adamw puts a parameter in: "decay", "no_decay" or "embedding".
std::string weight_decay_group(const std::string& parameter_name);

void set_learning_rate(torch::optim::Optimizer& optimizer, double lr);

// Enables bf16 autocast (CPU, and CUDA under --device cuda) for its lifetime (parameters and
// optimizer state stay float32).
class AutocastBF16 {
 public:
  explicit AutocastBF16(bool on);
  ~AutocastBF16();
  AutocastBF16(const AutocastBF16&) = delete;
  AutocastBF16& operator=(const AutocastBF16&) = delete;

 private:
  bool on_;
};

// Mean over tokens of weights * cross-entropy; logits [B, T, V], targets/weights [B, T].
at::Tensor weighted_cross_entropy(const at::Tensor& logits, const at::Tensor& targets, const at::Tensor& weights);

// One data-parallel rank's share of that mean over the global batch: the weighted sum over this
// rank's rows divided by `global_weight`, the sum of the weights of the whole global batch (a scalar
// tensor). The shares of all ranks, and so their gradients, add up to the single-process loss; with
// every row local it is weighted_cross_entropy itself, operation for operation.
at::Tensor weighted_cross_entropy_share(const at::Tensor& logits, const at::Tensor& targets, const at::Tensor& weights,
                                        const at::Tensor& global_weight);

// The denominator weighted_cross_entropy uses for `weights`: their sum, at least 1e-8.
at::Tensor cross_entropy_weight_total(const at::Tensor& weights);

// Mean over tokens of KL(p_teacher || p_student), temperature 1, computed in float32. On the CPU,
// with a teacher that needs no gradient, a fused kernel (one softmax per row and model, no
// [tokens, vocab] intermediates); elsewhere kl_divergence_reference.
at::Tensor kl_divergence(const at::Tensor& teacher_logits, const at::Tensor& student_logits);
// The same mean as libtorch ops (log-softmaxes, exp, product, sum).
at::Tensor kl_divergence_reference(const at::Tensor& teacher_logits, const at::Tensor& student_logits);

// One data-parallel rank's share of that mean: the sum over its tokens divided by `global_tokens`,
// the number of tokens in the whole global batch.
at::Tensor kl_divergence_share(const at::Tensor& teacher_logits, const at::Tensor& student_logits,
                               int64_t global_tokens);

}  // namespace rad
