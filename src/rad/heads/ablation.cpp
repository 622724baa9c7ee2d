#include "rad/heads/ablation.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "rad/core/error.h"
#include "rad/parallel/process_group.h"

namespace rad {

namespace {

// Right-padded batch of examples plus the (row, position) pairs whose predictions are scored.
struct ProbeBatch {
  at::Tensor ids;          // [B, T]
  at::Tensor real;         // [B, T] bool, true on real tokens
  at::Tensor rows, cols;   // [N] scored positions (p - 1 for answer token p)
  at::Tensor targets;      // [N]
  std::vector<std::vector<int64_t>> answer_slices;  // per answer: indices into the N scored positions
};

ProbeBatch make_probe_batch(const std::vector<tasks::EncodedExample>& ex, size_t from, size_t to) {
  int64_t T = 0;
  for (size_t i = from; i < to; ++i) T = std::max<int64_t>(T, ex[i].ids.size());
  const int64_t B = static_cast<int64_t>(to - from);
  ProbeBatch b;
  b.ids = at::zeros({B, T}, at::kLong);
  b.real = at::zeros({B, T}, at::kBool);
  std::vector<int64_t> rows, cols, targets;
  for (size_t i = from; i < to; ++i) {
    const auto& e = ex[i];
    int64_t r = static_cast<int64_t>(i - from);
    b.ids[r].narrow(0, 0, e.ids.size()).copy_(at::tensor(e.ids, at::kLong));
    b.real[r].narrow(0, 0, e.ids.size()).fill_(true);
    for (const auto& [s, t] : e.answers) {
      std::vector<int64_t> slice;
      for (int64_t p = s; p < t; ++p) {
        slice.push_back(static_cast<int64_t>(rows.size()));
        rows.push_back(r);
        cols.push_back(p - 1);
        targets.push_back(e.ids[p]);
      }
      b.answer_slices.push_back(slice);
    }
  }
  b.rows = at::tensor(rows, at::kLong);
  b.cols = at::tensor(cols, at::kLong);
  b.targets = at::tensor(targets, at::kLong);
  return b;
}

struct BatchScore {
  int64_t correct = 0;   // answers whose every token is the argmax
  double logprob = 0;    // sum over answers of the answer's log-probability (sum over its tokens)
};

// Scores a batch from the final hidden states.
BatchScore score_batch(CausalLM& model, const at::Tensor& hidden, const ProbeBatch& b) {
  at::Tensor logits = model->final_logits(hidden.index({b.rows, b.cols})).to(at::kFloat);  // [N, V]
  const at::Tensor targets = b.targets.to(logits.device());
  at::Tensor hit = (logits.argmax(-1) == targets).to(at::kCPU).contiguous();
  at::Tensor lp =
      logits.log_softmax(-1).gather(1, targets.unsqueeze(1)).squeeze(1).to(at::kCPU, at::kDouble).contiguous();
  const bool* h = hit.data_ptr<bool>();
  const double* l = lp.data_ptr<double>();
  BatchScore s;
  for (const auto& slice : b.answer_slices) {
    bool ok = true;
    for (int64_t k : slice) {
      ok = ok && h[k];
      s.logprob += l[k];
    }
    s.correct += ok ? 1 : 0;
  }
  return s;
}

}  // namespace

HeadAblator::HeadAblator(CausalLM& model, std::vector<tasks::EncodedExample> probe, std::string mode,
                         int64_t batch_size)
    : model_(model), probe_(std::move(probe)), mode_(std::move(mode)), batch_size_(batch_size) {
  RAD_CHECK(mode_ == "zero" || mode_ == "mean", "--ablation must be zero or mean, got \"{}\"", mode_);
  RAD_CHECK(!probe_.empty(), "the probe set is empty");
  RAD_CHECK(batch_size_ >= 1, "batch size must be >= 1");
  if (mode_ == "mean") {
    const ModelConfig& c = model_->config();
    at::NoGradGuard no_grad;
    const at::TensorOptions on_model = at::TensorOptions(at::kDouble).device(model_->device());
    at::Tensor sums = at::zeros({c.n_layer, c.n_head, c.d_head}, on_model);
    int64_t count = 0;
    for (size_t s = 0; s < probe_.size(); s += batch_size_) {
      ProbeBatch b = make_probe_batch(probe_, s, std::min(probe_.size(), s + batch_size_));
      ForwardHooks hooks;
      at::Tensor real = b.real.to(model_->device(), at::kDouble).unsqueeze(-1).unsqueeze(-1);  // [B, T, 1, 1]
      hooks.head_output = [&](int64_t layer, const at::Tensor& z) {
        sums[layer] += (z.to(at::kDouble) * real).sum(at::IntArrayRef{0, 1});
        return z;
      };
      model_->forward(b.ids, nullptr, &hooks);
      count += b.real.sum().item<int64_t>();
    }
    head_means_ = (sums / static_cast<double>(count)).to(model_->compute_dtype());
  }
}

ForwardHooks HeadAblator::hooks_for(const HeadSet& heads) const {
  std::map<int64_t, std::vector<int64_t>> by_layer;
  for (const auto& [l, h] : heads) by_layer[l].push_back(h);
  ForwardHooks hooks;
  at::Tensor means = head_means_;
  bool mean = mode_ == "mean";
  hooks.head_output = [by_layer, means, mean](int64_t layer, const at::Tensor& z) {
    auto it = by_layer.find(layer);
    if (it == by_layer.end()) return z;
    at::Tensor out = z.clone();  // [B, T, H, D]
    for (int64_t h : it->second) {
      if (mean) out.select(2, h).copy_(means[layer][h].expand_as(out.select(2, h)));
      else out.select(2, h).zero_();
    }
    return out;
  };
  return hooks;
}

ProbeScore probe_score(CausalLM& model, const std::vector<tasks::EncodedExample>& probe, int64_t batch_size,
                       parallel::ProcessGroup* group) {
  RAD_CHECK(!probe.empty() && batch_size >= 1, "probe score: need examples and a batch size >= 1");
  at::NoGradGuard no_grad;
  const bool dp = group && group->distributed();
  const int64_t rank = dp ? group->rank() : 0, world = dp ? group->world_size() : 1;
  int64_t correct = 0, total = 0;
  double logprob = 0;
  const int64_t L = model->config().n_layer;
  int64_t batch_index = 0;
  for (size_t s = 0; s < probe.size(); s += batch_size, ++batch_index) {
    if (batch_index % world != rank) continue;
    ProbeBatch b = make_probe_batch(probe, s, std::min(probe.size(), s + batch_size));
    at::Tensor hidden = model->run_layers(model->embed(b.ids.to(model->device())), 0, L);
    BatchScore bs = score_batch(model, hidden, b);
    correct += bs.correct;
    total += static_cast<int64_t>(b.answer_slices.size());
    logprob += bs.logprob;
  }
  if (dp) {
    // Counts below 2^53 are exact in float64.
    at::Tensor sums = at::tensor({static_cast<double>(correct), static_cast<double>(total), logprob}, at::kDouble);
    group->allreduce(sums, parallel::Reduce::kSum, "the probe score's all-reduce");
    correct = static_cast<int64_t>(sums[0].item<double>());
    total = static_cast<int64_t>(sums[1].item<double>());
    logprob = sums[2].item<double>();
  }
  ProbeScore out;
  out.accuracy.correct = correct;
  out.accuracy.total = total;
  out.mean_logprob = logprob / std::max<int64_t>(1, total);
  return out;
}

double HeadAblator::accuracy(const HeadSet& heads) {
  at::NoGradGuard no_grad;
  ForwardHooks hooks = hooks_for(heads);
  int64_t correct = 0, total = 0;
  const int64_t L = model_->config().n_layer;
  for (size_t s = 0; s < probe_.size(); s += batch_size_) {
    ProbeBatch b = make_probe_batch(probe_, s, std::min(probe_.size(), s + batch_size_));
    at::Tensor hidden = model_->run_layers(model_->embed(b.ids), 0, L, nullptr, heads.empty() ? nullptr : &hooks);
    correct += score_batch(model_, hidden, b).correct;
    total += static_cast<int64_t>(b.answer_slices.size());
  }
  return static_cast<double>(correct) / total;
}

SweepResult HeadAblator::sweep(Progress* progress, parallel::ProcessGroup* group) {
  at::NoGradGuard no_grad;
  auto t0 = std::chrono::steady_clock::now();
  const ModelConfig& c = model_->config();
  const int64_t L = c.n_layer, H = c.n_head;
  const int64_t world = group ? group->world_size() : 1, rank = group ? group->rank() : 0;
  std::vector<int64_t> correct_without(L * H, 0);
  std::vector<double> logprob_without(L * H, 0.0);
  int64_t correct = 0, total = 0;
  double logprob = 0;
  const int64_t n_batches = static_cast<int64_t>((probe_.size() + batch_size_ - 1) / batch_size_);
  int64_t b_index = 0;
  for (size_t s = 0; s < probe_.size(); s += batch_size_, ++b_index) {
    ProbeBatch b = make_probe_batch(probe_, s, std::min(probe_.size(), s + batch_size_));
    std::vector<at::Tensor> residual_in;
    ForwardHooks capture;
    capture.residual_in = &residual_in;
    at::Tensor hidden = model_->run_layers(model_->embed(b.ids), 0, L, nullptr, &capture);
    BatchScore clean = score_batch(model_, hidden, b);
    correct += clean.correct;
    logprob += clean.logprob;
    total += static_cast<int64_t>(b.answer_slices.size());
    for (int64_t l = 0; l < L; ++l) {
      for (int64_t h = 0; h < H; ++h) {
        if ((l * H + h) % world != rank) continue;  // another rank's head
        ForwardHooks hooks = hooks_for({{l, h}});
        at::Tensor out = model_->run_layers(residual_in[l], l, L, nullptr, &hooks);
        BatchScore ablated = score_batch(model_, out, b);
        correct_without[l * H + h] += ablated.correct;
        logprob_without[l * H + h] += ablated.logprob;
        if (progress) progress->update(b_index * L * H + l * H + h + 1);
      }
    }
  }
  (void)n_batches;
  if (group && group->distributed()) {
    // Gather: every head's sums come from the one rank that scored it.
    at::Tensor counts = at::from_blob(correct_without.data(), {L * H}, at::kLong).clone();
    at::Tensor logprobs = at::from_blob(logprob_without.data(), {L * H}, at::kDouble).clone();
    group->allreduce(counts, parallel::Reduce::kSum, "the gather of the head sweep's correct answers");
    group->allreduce(logprobs, parallel::Reduce::kSum, "the gather of the head sweep's answer log-probabilities");
    std::copy(counts.data_ptr<int64_t>(), counts.data_ptr<int64_t>() + L * H, correct_without.begin());
    std::copy(logprobs.data_ptr<double>(), logprobs.data_ptr<double>() + L * H, logprob_without.begin());
  }
  SweepResult r;
  r.answers = total;
  r.teacher_accuracy = static_cast<double>(correct) / total;
  r.teacher_logprob = logprob / total;
  std::vector<HeadScore> scores;
  for (int64_t l = 0; l < L; ++l)
    for (int64_t h = 0; h < H; ++h) {
      HeadScore s;
      s.layer = l;
      s.head = h;
      s.kv_group = h / c.n_group();
      s.accuracy_without = static_cast<double>(correct_without[l * H + h]) / total;
      s.accuracy_drop = r.teacher_accuracy - s.accuracy_without;
      s.score = r.teacher_logprob - logprob_without[l * H + h] / total;
      scores.push_back(s);
    }
  r.ranked = rank_heads(std::move(scores));
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

std::vector<HeadScore> rank_heads(std::vector<HeadScore> scores) {
  std::stable_sort(scores.begin(), scores.end(), [](const HeadScore& a, const HeadScore& b) {
    if (a.score != b.score) return a.score > b.score;
    if (a.layer != b.layer) return a.layer < b.layer;
    return a.head < b.head;
  });
  for (size_t i = 0; i < scores.size(); ++i) scores[i].rank = static_cast<int64_t>(i + 1);
  return scores;
}

nlohmann::json HeadSelector::to_json() const {
  if (budget > 0) return {{"kind", "budget"}, {"budget", budget}};
  if (fraction > 0) return {{"kind", "fraction"}, {"fraction", fraction}};
  if (threshold) return {{"kind", "threshold"}, {"threshold", *threshold}};
  return {{"kind", "none"}};
}

int64_t heads_for_fraction(double fraction, int64_t n_heads) {
  RAD_CHECK(fraction > 0 && fraction <= 1.0, "--fraction must be in (0, 1], got {}", fraction);
  // The 1e-9 keeps a product that is an integer up to rounding (0.25 x 48) from rounding up past it.
  return std::max<int64_t>(1, static_cast<int64_t>(std::ceil(fraction * static_cast<double>(n_heads) - 1e-9)));
}

HeadSet select_heads(const std::vector<HeadScore>& ranked, const HeadSelector& sel) {
  int used = (sel.budget > 0) + (sel.fraction > 0) + sel.threshold.has_value();
  RAD_CHECK(used == 1, "choose exactly one of --budget, --fraction or --threshold");
  HeadSet out;
  if (sel.threshold) {
    for (const auto& s : ranked)
      if (s.score >= *sel.threshold) out.insert({s.layer, s.head});
    return out;
  }
  int64_t k = sel.budget > 0 ? sel.budget : heads_for_fraction(sel.fraction, static_cast<int64_t>(ranked.size()));
  RAD_CHECK(k <= static_cast<int64_t>(ranked.size()), "--budget {} exceeds the {} heads of the model", k, ranked.size());
  for (int64_t i = 0; i < k; ++i) out.insert({ranked[i].layer, ranked[i].head});
  return out;
}

}  // namespace rad
