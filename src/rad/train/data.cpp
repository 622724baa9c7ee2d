#include "rad/train/data.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <sstream>

#include "rad/core/device.h"
#include "rad/core/error.h"
#include "rad/train/teacher_task_rows.h"

namespace rad {

TokenCorpus TokenCorpus::from_text(const std::string& text, const tasks::Encoder& encode, double heldout_fraction) {
  RAD_CHECK(heldout_fraction >= 0 && heldout_fraction < 1, "held-out fraction must be in [0, 1), got {}",
            heldout_fraction);
  std::vector<std::string> lines;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) lines.push_back(line + "\n");
  RAD_CHECK(!lines.empty(), "the corpus is empty");
  size_t split = lines.size() - static_cast<size_t>(heldout_fraction * lines.size());
  std::vector<int32_t> train, heldout;
  // Encode in blocks of lines: long enough to amortise, short enough to bound memory.
  auto encode_range = [&](size_t from, size_t to, std::vector<int32_t>* out) {
    std::string block;
    for (size_t i = from; i < to; ++i) {
      block += lines[i];
      if (block.size() > (1 << 16) || i + 1 == to) {
        for (int64_t id : encode(block)) out->push_back(static_cast<int32_t>(id));
        block.clear();
      }
    }
  };
  encode_range(0, split, &train);
  encode_range(split, lines.size(), &heldout);
  return TokenCorpus{TokenSeq(std::move(train)), TokenSeq(std::move(heldout))};
}

void TaskMix::validate() const {
  RAD_CHECK(task_share >= 0 && task_share <= 1, "task share must be in [0, 1], got {}", task_share);
  RAD_CHECK(min_pairs >= 1 && max_pairs >= min_pairs, "pairs range [{}, {}] is empty", min_pairs, max_pairs);
  RAD_CHECK(queries >= 1, "queries must be >= 1, got {}", queries);
  RAD_CHECK(answer_weight >= 0, "answer weight must be >= 0, got {}", answer_weight);
  RAD_CHECK(task_share == 0 || recipe() || !tasks.empty(), "a task share > 0 needs at least one task");
  for (double s : {copy_share, compact_share, offset_share, paper_share})
    RAD_CHECK(s >= 0 && s <= 1, "--copy-share, --compact-share, --offset-share and --paper-share must be in [0, 1], "
              "got {}", s);
  const double recipe_sum = copy_share + compact_share + offset_share + paper_share;
  RAD_CHECK(!recipe() || std::abs(recipe_sum - 1) < 1e-6,
            "--copy-share + --compact-share + --offset-share + --paper-share are shares of the task rows and must "
            "sum to 1, got {}", recipe_sum);
  RAD_CHECK(pair_stages.empty() || stage_steps.size() == pair_stages.size(),
            "--stage-steps needs one first step per --pair-stages entry ({}), got {}", pair_stages.size(),
            stage_steps.size());
  RAD_CHECK(stage_steps.empty() || !pair_stages.empty(), "--stage-steps needs --pair-stages");
  RAD_CHECK(!stage_steps.empty() || pair_stages.empty() || pair_stages.size() == 1,
            "--pair-stages with more than one stage needs --stage-steps");
  RAD_CHECK(pair_stages.empty() || stage_steps.empty() || stage_steps[0] == 0,
            "--stage-steps must start with 0 (the first stage begins at step 0), got {}",
            stage_steps.empty() ? 0 : stage_steps[0]);
  for (size_t s = 1; s < stage_steps.size(); ++s)
    RAD_CHECK(stage_steps[s] > stage_steps[s - 1], "--stage-steps must increase, got {} after {}", stage_steps[s],
              stage_steps[s - 1]);
  for (int64_t p : pair_stages)
    RAD_CHECK(p >= min_pairs, "--pair-stages: every stage needs at least --min-pairs ({}) pairs, got {}", min_pairs,
              p);
  RAD_CHECK(stage_corpus_share.empty() || stage_corpus_share.size() == static_cast<size_t>(stages()),
            "--stage-corpus needs one share per stage ({}), got {}", stages(), stage_corpus_share.size());
  for (double c : stage_corpus_share)
    RAD_CHECK(c >= 0 && c <= 1, "--stage-corpus: shares must be in [0, 1], got {}", c);
}

int64_t TaskMix::stage_at(int64_t step) const {
  int64_t s = 0;
  while (s + 1 < static_cast<int64_t>(stage_steps.size()) && step >= stage_steps[s + 1]) ++s;
  return s;
}

int64_t TaskMix::max_pairs_at(int64_t stage) const {
  if (pair_stages.empty()) return max_pairs;
  return pair_stages[std::clamp<int64_t>(stage, 0, pair_stages.size() - 1)];
}

double TaskMix::task_share_at(int64_t stage) const {
  if (stage_corpus_share.empty()) return task_share;
  return 1.0 - stage_corpus_share[std::clamp<int64_t>(stage, 0, stage_corpus_share.size() - 1)];
}

namespace {

// One task example as tokens plus the indices whose prediction is an answer.
struct TaskTokens {
  std::vector<int64_t> ids;
  std::vector<uint8_t> is_answer;
};

TaskTokens recipe_example(const TaskMix& mix, const RecipeTokens& t, int64_t pairs, std::mt19937_64& rng) {
  const double u = std::uniform_real_distribution<double>(0, 1)(rng);
  RecipeRow row;
  if (u < mix.copy_share) row = copy_row(t, rng);
  else if (u < mix.copy_share + mix.compact_share) row = compact_row(t, t.train_keys, pairs, mix.queries, rng);
  // Offset rows stay short (at most 8 triples): their job is the positional move, not the lookup.
  else if (u < mix.copy_share + mix.compact_share + mix.offset_share)
    row = offset_row(t, t.train_keys, std::min<int64_t>(pairs, 8), rng);
  else row = paper_row(t, t.train_keys, pairs, mix.queries, rng);
  TaskTokens out{std::move(row.ids), {}};
  out.is_answer.assign(out.ids.size(), 0);
  for (int64_t i : row.targets) out.is_answer[i] = 1;
  return out;
}

TaskTokens text_example(const TaskMix& mix, const tasks::Encoder& encode, std::optional<int64_t> bos, int64_t pairs,
                        std::mt19937_64& rng) {
  tasks::TaskOptions o;
  o.split = tasks::KeySplit::kTrain;
  o.pairs = pairs;
  o.queries = mix.queries;
  const std::string& task = mix.tasks[std::uniform_int_distribution<size_t>(0, mix.tasks.size() - 1)(rng)];
  tasks::TaskExample example = task == "kv" && mix.queries_all
                                   ? tasks::make_kv_example(o, rng, std::min(o.pairs, mix.queries))
                                   : tasks::make_example(task, o, rng);
  tasks::EncodedExample ex = tasks::encode_example(example, encode, bos);
  TaskTokens out{std::move(ex.ids), {}};
  out.is_answer.assign(out.ids.size(), 0);
  for (const auto& [b, e] : ex.answers)
    for (int64_t p = b; p < e; ++p) out.is_answer[p] = 1;
  return out;
}

}  // namespace

Batch make_batch(const TokenSeq& tokens, const TaskMix& mix, const tasks::Encoder& encode,
                 std::optional<int64_t> bos, int64_t batch, int64_t seq, uint64_t seed, int64_t step, int64_t stage,
                 const RecipeTokens* recipe, const parallel::RowShard* read_rows) {
  const double task_share = mix.task_share_at(stage);
  RAD_CHECK(static_cast<int64_t>(tokens.size()) > seq + 1 || task_share >= 1.0,
            "the corpus has {} tokens, fewer than one sequence of {}", tokens.size(), seq + 1);
  RAD_CHECK(!mix.recipe() || recipe != nullptr, "recipe rows need the recipe's token tables");
  std::seed_seq seeds{static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32), static_cast<uint32_t>(step),
                      static_cast<uint32_t>(step >> 32)};
  std::mt19937_64 rng(seeds);
  at::Tensor ids = at::zeros({batch, seq + 1}, at::kLong);
  at::Tensor weights = at::ones({batch, seq + 1}, at::kFloat);
  auto ia = ids.accessor<int64_t, 2>();
  auto wa = weights.accessor<float, 2>();
  std::uniform_real_distribution<double> unit(0, 1);
  const int64_t max_pairs = mix.max_pairs_at(stage);
  const float other_weight = mix.answer_only ? 0.0f : 1.0f;
  for (int64_t r = 0; r < batch; ++r) {
    if (unit(rng) < task_share) {
      int64_t t = 0;
      while (t < seq + 1) {
        const int64_t pairs = std::uniform_int_distribution<int64_t>(mix.min_pairs, max_pairs)(rng);
        TaskTokens ex = mix.recipe() ? recipe_example(mix, *recipe, pairs, rng) : text_example(mix, encode, bos, pairs, rng);
        // Packed rows cut the last example at the row end; so do rows of one example that is longer
        // than seq (its answers past the end are lost, pretrain warns about it).
        for (size_t i = 0; i < ex.ids.size() && t < seq + 1; ++i, ++t) {
          ia[r][t] = ex.ids[i];
          wa[r][t] = ex.is_answer[i] ? static_cast<float>(mix.answer_weight) : other_weight;
        }
        if (mix.one_per_row) {
          // Padding: any token works (causal attention keeps it out of the example); weight 0.
          const int64_t pad = mix.recipe() ? recipe->newline : ex.ids.back();
          for (; t < seq + 1; ++t) {
            ia[r][t] = pad;
            wa[r][t] = 0.0f;
          }
        }
      }
    } else {
      int64_t start = std::uniform_int_distribution<int64_t>(0, tokens.size() - seq - 2)(rng);
      if (read_rows && (r < read_rows->begin || r >= read_rows->begin + read_rows->count)) continue;
      int64_t t = 0;
      if (bos) ia[r][t++] = *bos;
      // Window ids [start + t, start + seq + 1) land at columns [t, seq + 1).
      tokens.copy(start + t, seq + 1 - t, &ia[r][t]);
    }
  }
  // Weight i of the target sequence belongs to token i + 1.
  return {ids.narrow(1, 0, seq).contiguous(), ids.narrow(1, 1, seq).contiguous(),
          weights.narrow(1, 1, seq).contiguous()};
}

Batch make_batch(const TokenSeq& tokens, const TaskMix& mix, const tasks::Encoder& encode,
                 std::optional<int64_t> bos, int64_t batch, int64_t seq, uint64_t seed, int64_t step,
                 const parallel::RowShard* read_rows) {
  std::optional<RecipeTokens> recipe;
  if (mix.recipe()) recipe = RecipeTokens::build(encode, bos);
  return make_batch(tokens, mix, encode, bos, batch, seq, seed, step, mix.stage_at(step),
                    recipe ? &*recipe : nullptr, read_rows);
}

std::vector<at::Tensor> heldout_windows(const TokenSeq& tokens, int64_t seq, int64_t max_windows,
                                        std::optional<int64_t> bos) {
  std::vector<at::Tensor> out;
  int64_t body = bos ? seq - 1 : seq;
  for (int64_t start = 0; start + body + 1 <= static_cast<int64_t>(tokens.size()) &&
                          static_cast<int64_t>(out.size()) < max_windows;
       start += body) {
    std::vector<int64_t> w;
    if (bos) w.push_back(*bos);
    w.resize(w.size() + body + 1);
    tokens.copy(start, body + 1, w.data() + (bos ? 1 : 0));
    out.push_back(at::tensor(w, at::kLong));
  }
  return out;
}

Batch on_compute_device(Batch b) {
  b.input_ids = to_compute_device(b.input_ids);
  b.targets = to_compute_device(b.targets);
  b.weights = to_compute_device(b.weights);
  return b;
}

}  // namespace rad
