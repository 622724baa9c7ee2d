// Training data: a tokenized text corpus (with a held-out split) mixed with synthetic task
// sequences. A batch is a pure function of (seed, step), so resuming after an interruption sees
// exactly the data an uninterrupted run would have seen, with no data-loader state to save.
#pragma once

#include <ATen/ATen.h>

#include <optional>
#include <string>
#include <vector>

#include "rad/parallel/shard.h"
#include "rad/tasks/scorer.h"
#include "rad/train/token_seq.h"

namespace rad {

// Token ids in memory (from_text) or memory-mapped from a token directory (token_shards.h).
struct TokenCorpus {
  TokenSeq train;
  TokenSeq heldout;
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

  // Retrieval recipe (docs/DESIGN.md section 11c; src/rad/train/teacher_task_rows.h). When any of these four shares is > 0,
  // task rows are token-level recipe rows of these kinds (shares of the task rows, summing to 1)
  // instead of text examples of `tasks`.
  double copy_share = 0, compact_share = 0, offset_share = 0, paper_share = 0;
  bool answer_only = false;   // task tokens other than answers get loss weight 0
  bool queries_all = false;   // kv rows query every pair (at most `queries`), not one
  bool one_per_row = false;   // one task example per row, padded with weight 0, instead of packing
  // Curriculum on the number of pairs: stage s draws pairs in [min_pairs, pair_stages[s]] from step
  // stage_steps[s] on (stage_steps starts with 0 and increases). Empty: one stage of max_pairs.
  std::vector<int64_t> pair_stages;
  std::vector<int64_t> stage_steps;
  // Optional per-stage share of corpus rows (overrides 1 - task_share), as many as pair_stages.
  std::vector<double> stage_corpus_share;

  void validate() const;
  bool recipe() const { return copy_share + compact_share + offset_share + paper_share > 0; }
  int64_t stages() const { return pair_stages.empty() ? 1 : static_cast<int64_t>(pair_stages.size()); }
  int64_t stage_at(int64_t step) const;            // by the step boundaries alone
  int64_t max_pairs_at(int64_t stage) const;
  double task_share_at(int64_t stage) const;      // 1 - the stage's corpus share
};

struct RecipeTokens;

struct Batch {
  at::Tensor input_ids;  // [B, T] int64
  at::Tensor targets;    // [B, T] int64
  at::Tensor weights;    // [B, T] float32 loss weights (0 = ignored)
};

// Rows of length seq: corpus windows (from `tokens`, random start) or task examples (training key
// pool only), packed or one per row. Deterministic in (seed, step, stage). `stage` is the curriculum
// stage (mix.stage_at(step) unless an adaptive advance moved it further); `recipe` holds the
// recipe's token tables and is required when mix.recipe(). With `read_rows`, corpus rows outside
// those rows are drawn (the same random stream) but not read and stay zero: a data-parallel rank
// reads only the windows of its own rows, and its rows are those of the single-process batch.
Batch make_batch(const TokenSeq& tokens, const TaskMix& mix, const tasks::Encoder& encode,
                 std::optional<int64_t> bos, int64_t batch, int64_t seq, uint64_t seed, int64_t step, int64_t stage,
                 const RecipeTokens* recipe, const parallel::RowShard* read_rows = nullptr);

// `b` with its tensors on compute_device() (batches are made on the CPU).
Batch on_compute_device(Batch b);

// The same at stage mix.stage_at(step), building the recipe's tables when needed.
Batch make_batch(const TokenSeq& tokens, const TaskMix& mix, const tasks::Encoder& encode,
                 std::optional<int64_t> bos, int64_t batch, int64_t seq, uint64_t seed, int64_t step,
                 const parallel::RowShard* read_rows = nullptr);

// Consecutive non-overlapping windows of the held-out split for perplexity (at most max_windows).
std::vector<at::Tensor> heldout_windows(const TokenSeq& tokens, int64_t seq, int64_t max_windows,
                                        std::optional<int64_t> bos);

}  // namespace rad
