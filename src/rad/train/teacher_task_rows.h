// Token-level task rows of the retrieval recipe (docs/DESIGN.md section 11c, run H; the reference is
// scripts/train_teacher_recipe.py) and the telemetry that shows the lookup emerging.
//
// Rows are built from token ids, not from text: the fixed pieces of the probe ("Memorize the
// following dictionary:\n", "The value of the key '", "' is", ":", "\n", " ") and every key and value
// are encoded once with the model's tokenizer, and only keys whose ids in probe context are exactly
// their own single token are used, so a paper-format row is token for token what the text probe
// (tasks::make_kv_example) encodes to.
//
//   copy     BOS span SEP span          loss on the copy; span tokens from every key pool and values
//   compact  BOS K V K V ... SEP K V    Zoology-style MQAR, loss on the queried values
//   offset   BOS K : V K NL ...         dictionary-style offset rows, loss on the repeated key
//   paper    the probe's own format     every pair (up to `queries`) queried, loss on the answers
//
// Task keys come from the training key pool only (tasks::key_pool(KeySplit::kTrain)).
#pragma once

#include <cstdint>
#include <optional>
#include <random>
#include <vector>

#include "rad/model/causal_lm.h"
#include "rad/tasks/scorer.h"

namespace rad {

struct RecipeTokens {
  std::optional<int64_t> bos;
  std::vector<int64_t> header;        // "Memorize the following dictionary:\n"
  std::vector<int64_t> query_prefix;  // "The value of the key '"
  std::vector<int64_t> query_suffix;  // "' is"
  int64_t colon = -1, newline = -1, space = -1, sep = -1;  // ":", "\n", " ", "|"
  std::vector<int64_t> values;        // "0" .. "99", one token each
  std::vector<int64_t> train_keys;    // usable words of key_pool(kTrain)
  std::vector<int64_t> heldout_keys;  // usable words of key_pool(kEval): telemetry only
  std::vector<int64_t> copy_pool;     // usable words of every key pool, then the values

  // Encodes the pieces with `encode`. Throws rad::Error naming the piece when a single-token piece
  // (":", "\n", " ", "|", a value 0-99) is not one token, or when fewer than 100 training keys are
  // usable (a key is usable when it is one token and keeps that token inside "\nK:" and
  // "The value of the key 'K' is").
  static RecipeTokens build(const tasks::Encoder& encode, std::optional<int64_t> bos);
};

// One row. `targets` are indices i >= 1 into `ids` whose prediction (from ids[:i]) is in the loss;
// `listed` holds the row's dictionary values (paper, compact), for the "a listed value" rate.
struct RecipeRow {
  std::vector<int64_t> ids;
  std::vector<int64_t> targets;
  std::vector<int64_t> listed;
};

// `pairs` distinct keys from `keys` with distinct values; `queries` of them (distinct, random
// order) are asked. Paper rows: the probe text, answers " V" (two targets each: the space, V).
RecipeRow paper_row(const RecipeTokens& t, const std::vector<int64_t>& keys, int64_t pairs, int64_t queries,
                    std::mt19937_64& rng);
RecipeRow compact_row(const RecipeTokens& t, const std::vector<int64_t>& keys, int64_t pairs, int64_t queries,
                      std::mt19937_64& rng);
// A span of 6-19 tokens drawn (with replacement) from copy_pool, the separator, the same span.
RecipeRow copy_row(const RecipeTokens& t, std::mt19937_64& rng);
// `triples` lines "K : V K NL" (keys with replacement from `keys`), target: the repeated K.
RecipeRow offset_row(const RecipeTokens& t, const std::vector<int64_t>& keys, int64_t triples,
                     std::mt19937_64& rng);

// Token length of a one-query paper row with `pairs` pairs (every such row has the same length).
int64_t paper_probe_length(const RecipeTokens& t, int64_t pairs);

struct RecipeProbe {
  int64_t pairs = 0;
  double train = 0, train_listed = 0;      // training keys: accuracy, answer is some listed value
  double heldout = 0, heldout_listed = 0;  // held-out keys (never task keys)
};

struct RecipeTelemetry {
  std::vector<RecipeProbe> probes;
  std::vector<int64_t> skipped;     // probe sizes whose row does not fit in seq
  double heldout_key_cosine = 0;    // mean pairwise cosine of the held-out keys' input embeddings
  double train_key_cosine = 0;      // the same for the first 200 training keys
};

// Paper-format probe (one query per row, `examples` rows, seeded) at each of `pair_sizes` that fits
// in `seq` tokens, on training and held-out keys. A query is right when the greedy prediction is
// the space and then the value (the scoring rule of tasks/task.h).
RecipeTelemetry recipe_telemetry(CausalLM& model, const RecipeTokens& t, const std::vector<int64_t>& pair_sizes,
                                 int64_t examples, int64_t seq, uint64_t seed);

// Mean pairwise cosine similarity of the rows `ids` of the input embedding.
double mean_embedding_cosine(CausalLM& model, const std::vector<int64_t>& ids);

}  // namespace rad
