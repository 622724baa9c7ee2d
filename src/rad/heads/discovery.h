// `radistill heads`: probe, single-head sweep, selection, causal evidence, and the output files
// heads.json, plan.json, heads.svg, causal.svg and heads.md.
#pragma once

#include <string>

#include "rad/heads/ablation.h"
#include "rad/heads/head_plan.h"
#include "rad/tasks/scorer.h"

namespace rad {

struct DiscoveryOptions {
  // The probe: the paper's KV retrieval by default; a model too small to solve it (near chance at
  // every size that matters) can be probed with another retrieval task it does solve (e.g. needle).
  std::string task = "kv";    // kv | mqar | needle | phonebook | copy (rad/tasks/task.h)
  int64_t context_words = 400;  // needle: filler words
  int64_t pairs = 50;           // kv, mqar: dictionary size; phonebook: entries
  int64_t examples = 256;
  uint64_t seed = 0;
  std::string ablation = "zero";
  int64_t batch = 16;
  HeadSelector selector;
  int64_t random_draws = 5;  // random head sets per k for the causal check
  int64_t causal_examples = 128;  // examples of the causal check (disjoint from the selection probe)
  // Data-parallel peers (null: one process): they share the sweep's heads (HeadAblator::sweep);
  // rank 0 alone then selects, runs the causal check and writes the files.
  parallel::ProcessGroup* group = nullptr;
};

// The seed of the causal check's probe: its own stream, so its examples are not the selection's.
uint64_t causal_probe_seed(uint64_t seed);

// "KV retrieval, 50 pairs", "needle in 400 filler words", ...: the probe in words, for reports.
std::string describe_probe(const DiscoveryOptions& o);

struct DiscoveryResult {
  SweepResult sweep;
  HeadPlan plan;
  nlohmann::json heads_json;
};

// Largest KV-probe size (<= wanted) whose longest example fits the model's context, measured by
// encoding probe examples.
int64_t fitting_pairs(const ModelConfig& config, const tasks::Encoder& encode, std::optional<int64_t> bos,
                      int64_t wanted, uint64_t seed);

DiscoveryResult discover_heads(CausalLM& model, const tasks::Encoder& encode, std::optional<int64_t> bos,
                               const DiscoveryOptions& options, const std::string& out_dir);

// The k values of the causal check: 1, 2, 3, 5, then the budget and 2x, 3x of it (capped).
std::vector<int64_t> causal_k_values(int64_t budget, int64_t n_heads);

}  // namespace rad
