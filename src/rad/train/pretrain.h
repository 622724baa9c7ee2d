// Pretraining a Llama-family model from scratch on a text corpus mixed with retrieval tasks. The
// parts shared with distillation (TrainingLoopOptions, PretrainData, evaluate_lm) are in loop.h.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "rad/model/config.h"
#include "rad/train/loop.h"
#include "rad/train/schedule.h"

namespace rad {

struct PretrainOptions : TrainingLoopOptions {
  ModelConfig model;
  LrSchedule schedule;
  double init_std = 0.02;
  bool skip_nonfinite = false;  // skip a batch whose loss is NaN/Inf instead of stopping
  // Weight decay of the token embeddings and lm_head (a third optimizer group); unset: the same as
  // the other matrices. The recipe uses 0: decay collapsed rarely seen key rows (docs/DESIGN.md section 11b).
  std::optional<double> embedding_weight_decay;
  // Adaptive curriculum: > 0 moves to the next pair stage (earlier than mix.stage_steps says) once
  // the paper-format probe on training keys at the stage's largest size reaches this accuracy at an
  // evaluation. The stage reached is saved in the checkpoint, so --resume continues it exactly.
  double advance_at = 0;
  // Paper-format probe sizes of the recipe telemetry (sizes that do not fit in seq are skipped).
  std::vector<int64_t> telemetry_pairs = {8, 20, 50};
};

// Runs (or resumes) training; writes the final model to out_dir as an HF directory, with
// metrics.jsonl and checkpoints/ beside it.
void pretrain(const PretrainOptions& options, const PretrainData& data);

}  // namespace rad
