#include "rad/train/settings.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdint>

namespace rad {

namespace {

// FNV-1a over the first and last 4096 tokens of each split, with their sizes: cheap for a corpus of
// any size, and different whenever the files or the tokenizer differ in practice.
uint64_t corpus_fingerprint(const TokenCorpus& corpus) {
  uint64_t h = 1469598103934665603ull;
  auto mix = [&](uint64_t v) {
    for (int i = 0; i < 8; ++i) {
      h ^= (v >> (8 * i)) & 0xff;
      h *= 1099511628211ull;
    }
  };
  for (const auto* split : {&corpus.train, &corpus.heldout}) {
    mix(split->size());
    const size_t n = std::min<size_t>(split->size(), 4096);
    for (size_t i = 0; i < n; ++i) mix(static_cast<uint32_t>((*split)[i]));
    for (size_t i = split->size() - n; i < split->size(); ++i) mix(static_cast<uint32_t>((*split)[i]));
  }
  return h;
}

}  // namespace

nlohmann::json training_loop_settings(const TrainingLoopOptions& o, const TokenCorpus& corpus) {
  const TaskMix& m = o.mix;
  return {{"batch", o.batch},
          {"seq", o.seq},
          {"seed", o.seed},
          {"weight_decay", o.weight_decay},
          {"clip", o.clip},
          {"bf16", o.bf16},
          {"mix",
           {{"task_share", m.task_share}, {"tasks", m.tasks}, {"min_pairs", m.min_pairs}, {"max_pairs", m.max_pairs},
            {"queries", m.queries}, {"answer_weight", m.answer_weight}, {"copy_share", m.copy_share},
            {"compact_share", m.compact_share}, {"offset_share", m.offset_share}, {"paper_share", m.paper_share},
            {"answer_only", m.answer_only}, {"queries_all", m.queries_all}, {"one_per_row", m.one_per_row},
            {"pair_stages", m.pair_stages}, {"stage_steps", m.stage_steps},
            {"stage_corpus_share", m.stage_corpus_share}}},
          {"corpus_tokens", {corpus.train.size(), corpus.heldout.size()}},
          {"corpus_fingerprint", fmt::format("{:016x}", corpus_fingerprint(corpus))}};
}

}  // namespace rad
