// Training data: a tokenized text corpus (with a held-out split) mixed with synthetic task
// sequences. A batch is a pure function of (seed, step), so resuming after an interruption sees
// exactly the data an uninterrupted run would have seen, with no data-loader state to save.
#pragma once

#include <ATen/ATen.h>

#include <optional>
#include <string>
#include <vector>

#include "rad/tasks/scorer.h"

namespace rad {

struct TokenCorpus {
  std::vector<int32_t> train;
  std::vector<int32_t> heldout;
  // Splits `text` into lines, holds out the last `heldout_fraction` of lines, encodes both parts.
  static TokenCorpus from_text(const std::string& text, const tasks::Encoder& encode, double heldout_fraction);
};

struct TaskMix {
  double task_share = 0.5;                   // fraction of batch rows that are task sequences
  std::vector<std::string> tasks = {"mqar"};  // drawn uniformly per example
  int64_t min_pairs = 2;                     // pairs drawn uniformly in [min_pairs, max_pairs]
  int64_t max_pairs = 24;
  int64_t queries = 8;                       // mqar queries per dictionary
  double answer_weight = 1.0;                // loss weight of answer tokens (others: 1)

  void validate() const;
};

struct Batch {
  at::Tensor input_ids;  // [B, T] int64
  at::Tensor targets;    // [B, T] int64
  at::Tensor weights;    // [B, T] float32 loss weights (0 = ignored)
};

// Rows of length seq: corpus windows (from `tokens`, random start) or packed task examples
// (training key pool only). Deterministic in (seed, step).
Batch make_batch(const std::vector<int32_t>& tokens, const TaskMix& mix, const tasks::Encoder& encode,
                 std::optional<int64_t> bos, int64_t batch, int64_t seq, uint64_t seed, int64_t step);

// Consecutive non-overlapping windows of the held-out split for perplexity (at most max_windows).
std::vector<at::Tensor> heldout_windows(const std::vector<int32_t>& tokens, int64_t seq, int64_t max_windows,
                                        std::optional<int64_t> bos);

}  // namespace rad
