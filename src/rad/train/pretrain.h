// Pretraining a Llama-family model from scratch on a text corpus mixed with retrieval tasks.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "rad/model/config.h"
#include "rad/tasks/scorer.h"
#include "rad/train/data.h"
#include "rad/train/schedule.h"

namespace rad {
namespace dist {
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
  std::shared_ptr<dist::ProcessGroup> group;
};

struct PretrainOptions : TrainingLoopOptions {
  ModelConfig model;
  LrSchedule schedule;
  double init_std = 0.02;
  bool skip_nonfinite = false;  // skip a batch whose loss is NaN/Inf instead of stopping
  // Weight decay of the token embeddings and lm_head (a third optimizer group); unset: the same as
  // the other matrices. The recipe uses 0: decay collapsed rarely seen key rows (DESIGN 11b).
  std::optional<double> embedding_weight_decay;
  // Adaptive curriculum: > 0 moves to the next pair stage (earlier than mix.stage_steps says) once
  // the paper-format probe on training keys at the stage's largest size reaches this accuracy at an
  // evaluation. The stage reached is saved in the checkpoint, so --resume continues it exactly.
  double advance_at = 0;
  // Paper-format probe sizes of the recipe telemetry (sizes that do not fit in seq are skipped).
  std::vector<int64_t> telemetry_pairs = {8, 20, 50};
};

struct PretrainData {
  TokenCorpus corpus;
  tasks::Encoder encode;
  std::optional<int64_t> bos;
  // Copies tokenizer files into a model directory, so the result is a complete HF directory.
  std::function<void(const std::string& dir)> write_tokenizer;
};

struct EvalMetrics {
  tasks::Accuracy probe;
  double perplexity = 0;
};

// Runs (or resumes) training; writes the final model to out_dir as an HF directory, with
// metrics.jsonl and checkpoints/ beside it.
void pretrain(const PretrainOptions& options, const PretrainData& data);

// KV-probe accuracy (eval keys) and held-out perplexity, as logged during training.
EvalMetrics evaluate_lm(CausalLM& model, const PretrainData& data, int64_t probe_pairs, int64_t probe_examples,
                        int64_t seq, int64_t ppl_windows, uint64_t seed);

// Mean token cross-entropy of `windows` (each [T+1] ids) -> perplexity.
double perplexity(CausalLM& model, const std::vector<at::Tensor>& windows, int64_t batch_size);

}  // namespace rad
