#include "rad/train/loop.h"

#include <algorithm>
#include <cmath>

#include "rad/core/error.h"

namespace rad {

double perplexity(CausalLM& model, const std::vector<at::Tensor>& windows, int64_t batch_size) {
  RAD_CHECK(!windows.empty(), "no held-out windows to compute perplexity on (corpus too small?)");
  at::NoGradGuard no_grad;
  double total = 0;
  int64_t count = 0;
  for (size_t s = 0; s < windows.size(); s += batch_size) {
    std::vector<at::Tensor> rows(windows.begin() + s, windows.begin() + std::min(windows.size(), s + batch_size));
    at::Tensor x = at::stack(rows);
    at::Tensor logits = model->forward(x.narrow(1, 0, x.size(1) - 1)).to(at::kFloat);
    const at::Tensor targets = x.narrow(1, 1, x.size(1) - 1).reshape({-1}).to(logits.device());
    at::Tensor nll = at::cross_entropy_loss(logits.reshape({-1, logits.size(-1)}), targets, {}, at::Reduction::Sum);
    total += nll.item<double>();
    count += logits.size(0) * logits.size(1);
  }
  return std::exp(total / count);
}

EvalMetrics evaluate_lm(CausalLM& model, const PretrainData& data, int64_t probe_pairs, int64_t probe_examples,
                        int64_t seq, int64_t ppl_windows, uint64_t seed) {
  model->eval();
  EvalMetrics m;
  tasks::TaskOptions o;
  o.pairs = probe_pairs;
  o.split = tasks::KeySplit::kEval;
  std::vector<tasks::EncodedExample> probe;
  for (const auto& ex : tasks::make_examples("kv", o, probe_examples, seed))
    probe.push_back(tasks::encode_example(ex, data.encode, data.bos));
  m.probe = tasks::score(model, probe, 16);
  m.perplexity = perplexity(model, heldout_windows(data.corpus.heldout, seq, ppl_windows, data.bos), 8);
  model->train();
  return m;
}

}  // namespace rad
