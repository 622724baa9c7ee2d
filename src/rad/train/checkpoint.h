// Training checkpoints that survive interruption at any instant.
//
// A checkpoint is a directory DIR/checkpoints/step-NNNNNNNN holding model.safetensors, config.json,
// optimizer.pt and state.json, written completely (and fsync'ed) before the pointer file
// DIR/checkpoints/latest is atomically replaced to name it. Older step directories are removed
// only after that, so a crash at any point leaves the previous good checkpoint usable.
#pragma once

#include <torch/optim/optimizer.h>

#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

#include "rad/model/causal_lm.h"

namespace rad {

// How a model is written into a directory (config.json + model.safetensors); the default is
// io::save_causal_lm, hybrids pass their own.
using ModelSaver = std::function<void(CausalLM& model, const std::string& dir)>;

void save_training_checkpoint(const std::string& run_dir, int64_t step, CausalLM& model,
                              torch::optim::Optimizer& optimizer, const nlohmann::json& state,
                              const ModelSaver& save_model = nullptr);

// The step directory `latest` points at, if any.
std::optional<std::string> latest_checkpoint(const std::string& run_dir);

// Creates `run_dir` if needed and returns its latest checkpoint. A run directory that already holds
// a checkpoint is refused unless `resume` (the error names `what`, e.g. "training run").
std::optional<std::string> open_run_dir(const std::string& run_dir, bool resume, const std::string& what);

// Loads model parameters and optimizer state; returns state.json.
nlohmann::json load_training_checkpoint(const std::string& checkpoint_dir, CausalLM& model,
                                        torch::optim::Optimizer& optimizer);

// Keeps only the lines of a JSONL metrics file whose "step" is <= `step` (used on resume so the
// log matches an uninterrupted run). Missing file: nothing to do.
void truncate_metrics_log(const std::string& path, int64_t step);

// Appends one JSON line and flushes it to disk.
void append_jsonl(const std::string& path, const nlohmann::json& record);

}  // namespace rad
