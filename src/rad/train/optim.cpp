#include "rad/train/optim.h"

#include <ATen/autocast_mode.h>

namespace rad {

std::string weight_decay_group(const std::string& n) {
  if (n.find("norm") != std::string::npos || (n.size() > 5 && n.compare(n.size() - 5, 5, ".bias") == 0))
    return "no_decay";
  if (n.find("embed_tokens") != std::string::npos || n.rfind("lm_head", 0) == 0) return "embedding";
  return "decay";
}

std::unique_ptr<torch::optim::AdamW> make_adamw(CausalLM& model, double weight_decay, double lr,
                                                const std::function<bool(const std::string&)>& trainable,
                                                std::optional<double> embedding_weight_decay) {
  std::vector<at::Tensor> decay, no_decay, embedding;
  for (auto& item : model->named_parameters()) {
    const std::string& n = item.key();
    if (trainable && !trainable(n)) {
      item.value().set_requires_grad(false);
      continue;
    }
    item.value().set_requires_grad(true);
    const std::string group = weight_decay_group(n);
    if (group == "no_decay") no_decay.push_back(item.value());
    else if (group == "embedding" && embedding_weight_decay) embedding.push_back(item.value());
    else decay.push_back(item.value());
  }
  auto opts = [&](double wd) {
    auto o = std::make_unique<torch::optim::AdamWOptions>(lr);
    o->betas({0.9, 0.95}).eps(1e-8).weight_decay(wd);
    return o;
  };
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(decay, opts(weight_decay));
  groups.emplace_back(no_decay, opts(0.0));
  if (embedding_weight_decay) groups.emplace_back(embedding, opts(*embedding_weight_decay));
  return std::make_unique<torch::optim::AdamW>(groups);
}

void set_learning_rate(torch::optim::Optimizer& optimizer, double lr) {
  for (auto& group : optimizer.param_groups()) static_cast<torch::optim::AdamWOptions&>(group.options()).lr(lr);
}

AutocastBF16::AutocastBF16(bool on) : on_(on) {
  if (on_) {
    at::autocast::set_autocast_cpu_dtype(at::kBFloat16);
    at::autocast::set_cpu_enabled(true);
  }
}

AutocastBF16::~AutocastBF16() {
  if (on_) {
    at::autocast::set_cpu_enabled(false);
    at::autocast::clear_cache();
  }
}

at::Tensor cross_entropy_weight_total(const at::Tensor& weights) { return weights.reshape({-1}).sum().clamp_min(1e-8); }

at::Tensor weighted_cross_entropy_share(const at::Tensor& logits, const at::Tensor& targets, const at::Tensor& weights,
                                        const at::Tensor& global_weight) {
  const int64_t V = logits.size(-1);
  at::Tensor nll = at::cross_entropy_loss(logits.reshape({-1, V}).to(at::kFloat), targets.reshape({-1}),
                                          /*weight=*/{}, at::Reduction::None);
  at::Tensor w = weights.reshape({-1});
  return (nll * w).sum() / global_weight;
}

at::Tensor weighted_cross_entropy(const at::Tensor& logits, const at::Tensor& targets, const at::Tensor& weights) {
  return weighted_cross_entropy_share(logits, targets, weights, cross_entropy_weight_total(weights));
}

at::Tensor kl_divergence(const at::Tensor& teacher_logits, const at::Tensor& student_logits) {
  const int64_t V = teacher_logits.size(-1);
  at::Tensor log_p = at::log_softmax(teacher_logits.reshape({-1, V}).to(at::kFloat), -1);
  at::Tensor log_q = at::log_softmax(student_logits.reshape({-1, V}).to(at::kFloat), -1);
  return (log_p.exp() * (log_p - log_q)).sum(-1).mean();
}

at::Tensor kl_divergence_share(const at::Tensor& teacher_logits, const at::Tensor& student_logits,
                               int64_t global_tokens) {
  const int64_t V = teacher_logits.size(-1);
  at::Tensor log_p = at::log_softmax(teacher_logits.reshape({-1, V}).to(at::kFloat), -1);
  at::Tensor log_q = at::log_softmax(student_logits.reshape({-1, V}).to(at::kFloat), -1);
  return (log_p.exp() * (log_p - log_q)).sum(-1).sum() / static_cast<double>(global_tokens);
}

}  // namespace rad
