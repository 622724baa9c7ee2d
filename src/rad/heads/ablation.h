// Retrieval-head discovery by single-head ablation on the KV probe (docs/DESIGN.md section 3).
//
// Score of head (l, h) = mean drop, over the probe's answers, of the log-probability the model gives
// the answer (summed over its tokens) when that head's output z (its slice of the o_proj input) is
// zeroed or replaced by its mean over the probe set. It is continuous, so heads rarely tie (an
// accuracy drop has a resolution of 1/answers and ties by the dozen); the accuracy drop is reported
// beside it. Remaining ties break by (layer, head) ascending. The residual
// stream entering layer l is computed once per batch and reused for every head of layer l, so a
// head of layer l costs (n_layer - l) / n_layer of a forward pass.
#pragma once

#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "rad/core/progress.h"
#include "rad/model/causal_lm.h"
#include "rad/tasks/scorer.h"

namespace rad {
namespace parallel {
class ProcessGroup;
}

using HeadSet = std::set<std::pair<int64_t, int64_t>>;  // (layer, head)

struct HeadScore {
  int64_t layer = 0;
  int64_t head = 0;
  int64_t kv_group = 0;
  double accuracy_without = 0;  // probe accuracy with this head ablated
  double score = 0;             // the ranking key: mean answer log-probability drop (nats)
  int64_t rank = 0;             // 1 = most important
  double accuracy_drop = 0;     // teacher accuracy - accuracy_without
};

struct SweepResult {
  double teacher_accuracy = 0;
  double teacher_logprob = 0;     // mean answer log-probability of the unablated model
  int64_t answers = 0;
  std::vector<HeadScore> ranked;  // by score descending; ties by (layer, head) ascending
  double seconds = 0;
};

class HeadAblator {
 public:
  // `mode`: "zero" or "mean". For "mean", one pass over the probe computes each head's mean output
  // over all real (non-padding) token positions.
  HeadAblator(CausalLM& model, std::vector<tasks::EncodedExample> probe, std::string mode, int64_t batch_size);

  // Probe accuracy with every head in `heads` ablated at once (plain full forward with a hook).
  double accuracy(const HeadSet& heads);

  // Every single-head score, with residual reuse. `progress` (optional) counts heads.
  // With data-parallel peers (`group`), heads are dealt to the ranks round-robin (head l * n_head + h
  // to rank (l * n_head + h) mod WORLD_SIZE), each rank scores its heads on every probe batch, and
  // one all-reduce gathers the per-head sums. Every entry comes from a single rank (the others add
  // exact zeros), so every rank gets the single-process ranking bit for bit.
  SweepResult sweep(Progress* progress = nullptr, parallel::ProcessGroup* group = nullptr);

  // The hook that ablates `heads` (exposed for tests).
  ForwardHooks hooks_for(const HeadSet& heads) const;

 private:
  CausalLM& model_;
  std::vector<tasks::EncodedExample> probe_;
  std::string mode_;
  int64_t batch_size_;
  at::Tensor head_means_;  // [n_layer, n_head, d_head] for mean ablation
};

// A model's probe result: exact-match accuracy (with its Wilson interval) and the mean over answers
// of the answer's log-probability (summed over its tokens), the continuous signal the head scores use.
struct ProbeScore {
  tasks::Accuracy accuracy;
  double mean_logprob = 0;
};
// With a distributed `group`, every rank holding the same model, each rank scores every
// world_size-th batch and the sums are all-reduced: every rank returns the whole probe's score.
ProbeScore probe_score(CausalLM& model, const std::vector<tasks::EncodedExample>& probe, int64_t batch_size,
                       parallel::ProcessGroup* group = nullptr);

// Deterministic ranking (score desc, then layer, then head) with ranks filled in.
std::vector<HeadScore> rank_heads(std::vector<HeadScore> scores);

// Selection rules. Exactly one of budget (> 0), fraction (> 0) or threshold (set) is used.
struct HeadSelector {
  int64_t budget = 0;
  double fraction = 0;
  std::optional<double> threshold;
  nlohmann::json to_json() const;
};
HeadSet select_heads(const std::vector<HeadScore>& ranked, const HeadSelector& selector);

// The one rounding rule for a fraction of heads (`heads --fraction`, `run --fraction`, the default
// 3%): rounded up, so any positive fraction keeps at least one head. Fractions outside (0, 1] are refused.
int64_t heads_for_fraction(double fraction, int64_t n_heads);

}  // namespace rad
