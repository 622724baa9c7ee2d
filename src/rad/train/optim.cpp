#include "rad/train/optim.h"

#include <ATen/Parallel.h>
#include <ATen/autocast_mode.h>
#include <torch/csrc/autograd/custom_function.h>

#include <utility>
#include <vector>

#include "rad/core/autocast.h"
#include "rad/core/device.h"
#include "rad/runtime/kernels.h"

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
    set_autocast(at::kCPU, true, at::kBFloat16);
    if (compute_device().is_cuda()) set_autocast(at::kCUDA, true, at::kBFloat16);  // --device cuda: bf16 too
  }
}

AutocastBF16::~AutocastBF16() {
  if (on_) {
    set_autocast(at::kCPU, false, at::kBFloat16);
    if (compute_device().is_cuda()) set_autocast(at::kCUDA, false, autocast_dtype(at::kCUDA));
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

namespace {

// sum over rows of KL(softmax(t) || softmax(s)) / divisor, fused for float32 CPU logits [rows, V]
// with a teacher that needs no gradient. Hand-written because as libtorch ops the loss makes about
// ten passes over [rows, V] tensors (two log-softmaxes, exp, difference, product, sum, and their
// backward), each a fresh allocation of the full size; here each row is one softmax of the
// teacher and one of the student in a row buffer, forward and backward:
//   KL_row = sum_v p_v (t_v - s_v) - lse(t) + lse(s),   dKL/ds_v = q_v - p_v.
// p = softmax(t), q = softmax(s) of one row of V logits; returns {lse(t), lse(s)}.
std::pair<float, float> row_softmaxes(const float* t, const float* s, int64_t V, float* p, float* q) {
  std::copy(t, t + V, p);
  std::copy(s, s + V, q);
  const float lse_t = runtime::softmax(p, V);
  return {lse_t, runtime::softmax(q, V)};
}

struct FusedKlFunction : public torch::autograd::Function<FusedKlFunction> {
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx, const at::Tensor& t_in,
                                                const at::Tensor& s_in, double divisor) {
    at::Tensor t = t_in.contiguous(), s = s_in.contiguous();
    const int64_t R = t.size(0), V = t.size(1);
    const float *tp = t.data_ptr<float>(), *sp = s.data_ptr<float>();
    std::vector<double> per_row(R);
    at::parallel_for(0, R, 8, [&](int64_t begin, int64_t end) {
      std::vector<float> p(V), q(V);
      for (int64_t r = begin; r < end; ++r) {
        const float *tr = tp + r * V, *sr = sp + r * V;
        const auto [lse_t, lse_s] = row_softmaxes(tr, sr, V, p.data(), q.data());
        for (int64_t v = 0; v < V; ++v) q[v] = tr[v] - sr[v];
        per_row[r] = static_cast<double>(runtime::dot(p.data(), q.data(), V)) - lse_t + lse_s;
      }
    });
    double total = 0;
    for (double x : per_row) total += x;  // in row order: the same on any thread count
    ctx->save_for_backward({t, s});
    ctx->saved_data["divisor"] = divisor;
    return {at::scalar_tensor(total / divisor, t.options())};
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_out) {
    auto saved = ctx->get_saved_variables();
    at::Tensor t = saved[0], s = saved[1];
    const int64_t R = t.size(0), V = t.size(1);
    const float scale = static_cast<float>(grad_out[0].item<double>() / ctx->saved_data["divisor"].toDouble());
    at::Tensor gs = at::empty_like(s);
    const float *tp = t.data_ptr<float>(), *sp = s.data_ptr<float>();
    float* gp = gs.data_ptr<float>();
    at::parallel_for(0, R, 8, [&](int64_t begin, int64_t end) {
      std::vector<float> p(V);
      for (int64_t r = begin; r < end; ++r) {
        float* g = gp + r * V;
        row_softmaxes(tp + r * V, sp + r * V, V, p.data(), g);
        for (int64_t v = 0; v < V; ++v) g[v] = (g[v] - p[v]) * scale;
      }
    });
    return {at::Tensor(), gs, at::Tensor()};
  }
};

// Sum over tokens of KL(p_teacher || p_student), float32, divided by `divisor`.
at::Tensor kl_divergence_sum(const at::Tensor& teacher_logits, const at::Tensor& student_logits, double divisor) {
  const int64_t V = teacher_logits.size(-1);
  at::Tensor t = teacher_logits.reshape({-1, V}).to(at::kFloat), s = student_logits.reshape({-1, V}).to(at::kFloat);
  if (t.device().is_cpu() && s.device().is_cpu() && !t.requires_grad() && t.numel() > 0)
    return FusedKlFunction::apply(t, s, divisor)[0];
  return kl_divergence_reference(teacher_logits, student_logits) * (static_cast<double>(t.size(0)) / divisor);
}

}  // namespace

at::Tensor kl_divergence_reference(const at::Tensor& teacher_logits, const at::Tensor& student_logits) {
  const int64_t V = teacher_logits.size(-1);
  at::Tensor log_p = at::log_softmax(teacher_logits.reshape({-1, V}).to(at::kFloat), -1);
  at::Tensor log_q = at::log_softmax(student_logits.reshape({-1, V}).to(at::kFloat), -1);
  return (log_p.exp() * (log_p - log_q)).sum(-1).mean();
}

at::Tensor kl_divergence(const at::Tensor& teacher_logits, const at::Tensor& student_logits) {
  const int64_t rows = teacher_logits.numel() / std::max<int64_t>(teacher_logits.size(-1), 1);
  return kl_divergence_sum(teacher_logits, student_logits, static_cast<double>(rows));
}

at::Tensor kl_divergence_share(const at::Tensor& teacher_logits, const at::Tensor& student_logits,
                               int64_t global_tokens) {
  return kl_divergence_sum(teacher_logits, student_logits, static_cast<double>(global_tokens));
}

}  // namespace rad
