#include "rad/train/data.h"

#include <random>
#include <sstream>

#include "rad/core/error.h"

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
  TokenCorpus corpus;
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
  encode_range(0, split, &corpus.train);
  encode_range(split, lines.size(), &corpus.heldout);
  return corpus;
}

void TaskMix::validate() const {
  RAD_CHECK(task_share >= 0 && task_share <= 1, "task share must be in [0, 1], got {}", task_share);
  RAD_CHECK(min_pairs >= 1 && max_pairs >= min_pairs, "pairs range [{}, {}] is empty", min_pairs, max_pairs);
  RAD_CHECK(queries >= 1, "queries must be >= 1, got {}", queries);
  RAD_CHECK(answer_weight >= 0, "answer weight must be >= 0, got {}", answer_weight);
  RAD_CHECK(task_share == 0 || !tasks.empty(), "a task share > 0 needs at least one task");
}

Batch make_batch(const std::vector<int32_t>& tokens, const TaskMix& mix, const tasks::Encoder& encode,
                 std::optional<int64_t> bos, int64_t batch, int64_t seq, uint64_t seed, int64_t step) {
  RAD_CHECK(static_cast<int64_t>(tokens.size()) > seq + 1 || mix.task_share >= 1.0,
            "the corpus has {} tokens, fewer than one sequence of {}", tokens.size(), seq + 1);
  std::seed_seq seeds{static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32), static_cast<uint32_t>(step),
                      static_cast<uint32_t>(step >> 32)};
  std::mt19937_64 rng(seeds);
  at::Tensor ids = at::zeros({batch, seq + 1}, at::kLong);
  at::Tensor weights = at::ones({batch, seq + 1}, at::kFloat);
  auto ia = ids.accessor<int64_t, 2>();
  auto wa = weights.accessor<float, 2>();
  std::uniform_real_distribution<double> unit(0, 1);
  for (int64_t r = 0; r < batch; ++r) {
    if (unit(rng) < mix.task_share) {
      int64_t t = 0;
      while (t < seq + 1) {
        tasks::TaskOptions o;
        o.split = tasks::KeySplit::kTrain;
        o.pairs = std::uniform_int_distribution<int64_t>(mix.min_pairs, mix.max_pairs)(rng);
        o.queries = mix.queries;
        const std::string& task = mix.tasks[std::uniform_int_distribution<size_t>(0, mix.tasks.size() - 1)(rng)];
        tasks::EncodedExample ex = tasks::encode_example(tasks::make_example(task, o, rng), encode, bos);
        std::vector<uint8_t> is_answer(ex.ids.size(), 0);
        for (const auto& [b, e] : ex.answers)
          for (int64_t p = b; p < e; ++p) is_answer[p] = 1;
        for (size_t i = 0; i < ex.ids.size() && t < seq + 1; ++i, ++t) {
          ia[r][t] = ex.ids[i];
          if (is_answer[i]) wa[r][t] = static_cast<float>(mix.answer_weight);
        }
      }
    } else {
      int64_t start = std::uniform_int_distribution<int64_t>(0, tokens.size() - seq - 2)(rng);
      int64_t t = 0;
      if (bos) ia[r][t++] = *bos;
      for (; t < seq + 1; ++t) ia[r][t] = tokens[start + t];
    }
  }
  // Weight i of the target sequence belongs to token i + 1.
  return {ids.narrow(1, 0, seq).contiguous(), ids.narrow(1, 1, seq).contiguous(),
          weights.narrow(1, 1, seq).contiguous()};
}

std::vector<at::Tensor> heldout_windows(const std::vector<int32_t>& tokens, int64_t seq, int64_t max_windows,
                                        std::optional<int64_t> bos) {
  std::vector<at::Tensor> out;
  int64_t body = bos ? seq - 1 : seq;
  for (int64_t start = 0; start + body + 1 <= static_cast<int64_t>(tokens.size()) &&
                          static_cast<int64_t>(out.size()) < max_windows;
       start += body) {
    std::vector<int64_t> w;
    if (bos) w.push_back(*bos);
    for (int64_t i = 0; i < body + 1; ++i) w.push_back(tokens[start + i]);
    out.push_back(at::tensor(w, at::kLong));
  }
  return out;
}

}  // namespace rad
