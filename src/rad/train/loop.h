// What every training loop shares (pretrain in pretrain.h, distill in rad/distill/distill.h): the
// common options (TrainingLoopOptions), the data (PretrainData) and the periodic evaluation
// (evaluate_lm: KV probe and held-out perplexity).
#pragma once

#include <ATen/ATen.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "rad/model/causal_lm.h"
#include "rad/tasks/scorer.h"
#include "rad/train/data.h"

namespace rad {
namespace parallel {
class ProcessGroup;
}

// Settings every training loop shares (pretrain, distill): output directory, batch shape,
// optimizer hygiene, checkpoint / log / evaluation cadence, the data mix and resume.
struct TrainingLoopOptions {
  std::string out_dir;
  int64_t batch = 32;
  int64_t seq = 256;
  double weight_decay = 0.1;
  double clip = 1.0;
  bool bf16 = false;  // bf16 autocast (parameters and optimizer stay float32)
  uint64_t seed = 0;
  int64_t save_every = 200;
  int64_t log_every = 10;
  int64_t eval_every = 200;
  int64_t probe_pairs = 20;
  int64_t probe_examples = 100;
  int64_t ppl_windows = 16;
  TaskMix mix;
  bool resume = false;
  int64_t stop_after = 0;  // > 0: stop (after checkpointing) once this many steps are done; for tests
  // Data-parallel peers (null: a single process). `batch` stays the global batch: each rank trains
  // on its rows of it and gradients are summed, so N processes compute what one would; rank 0 alone
  // logs, evaluates and writes checkpoints.
  std::shared_ptr<parallel::ProcessGroup> group;
};

// The data of a training loop: the tokenized corpus (train and held-out splits) and the tokenizer
// the task rows and probes are encoded with.
struct PretrainData {
  TokenCorpus corpus;
  tasks::Encoder encode;
  std::optional<int64_t> bos;
  // Copies tokenizer files into a model directory, so the result is a complete HF directory.
  std::function<void(const std::string& dir)> write_tokenizer;
};

// The periodic evaluation of a training loop (evaluate_lm).
struct EvalMetrics {
  tasks::Accuracy probe;
  double perplexity = 0;
};

// KV-probe accuracy (eval keys) and held-out perplexity, as logged during training.
EvalMetrics evaluate_lm(CausalLM& model, const PretrainData& data, int64_t probe_pairs, int64_t probe_examples,
                        int64_t seq, int64_t ppl_windows, uint64_t seed);

// Mean token cross-entropy of `windows` (each [T+1] ids) -> perplexity.
double perplexity(CausalLM& model, const std::vector<at::Tensor>& windows, int64_t batch_size);

}  // namespace rad
