// `radistill eval`: the retrieval group (KV probe at several sizes, MQAR, needle in a haystack at
// several depths and lengths, phone book), the language group (held-out perplexity, user
// multiple-choice tasks), user generation tasks, cache memory (analytic and measured), and
// coverage = score / reference score, for several models side by side (docs/DESIGN.md sections 7-8).
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "rad/tasks/words.h"

namespace rad {

struct EvalOptions {
  std::vector<int64_t> kv_pairs = {10, 25, 50, 100};
  int64_t examples = 200;  // per retrieval task
  uint64_t seed = 0;
  int64_t mqar_pairs = 20;
  int64_t mqar_queries = 8;
  std::vector<int64_t> needle_words = {200, 600};
  std::vector<double> needle_depths = {0.0, 0.5, 1.0};
  std::vector<int64_t> multi_needle_words;  // multineedle filler lengths (empty: not run)
  int64_t needles = 4;                       // multineedle: facts per example
  int64_t phonebook_entries = 20;
  // Held-out perplexity (empty: skipped) on a UTF-8 text file's last heldout_fraction of lines, or
  // on the held-out split of a token directory from `radistill tokenize-corpus` (fixed when it was
  // tokenized: a heldout_fraction_given that differs is an error).
  std::string corpus;
  double heldout_fraction = 0.02;
  bool heldout_fraction_given = false;
  int64_t ppl_windows = 32;
  int64_t ppl_seq = 256;
  std::string user_tasks;  // JSONL (empty: none)
  int64_t batch = 16;
  int64_t kv_dtype_bytes = 2;  // analytic cache: KV bytes per element as deployed (bf16)
  std::vector<int64_t> lengths = {128, 2048, 4096, 32768};
  int64_t max_measured_length = 4096;  // measured cache bytes up to this length
  // Keys of the retrieval tasks: the "test" half of the held-out keys by default, disjoint from the
  // "select" half that `radistill heads` chooses heads on.
  tasks::KeySplit key_split = tasks::KeySplit::kTest;
  // Decode speed on the runtime engine: prefill this many tokens, then time this many steps.
  int64_t decode_prompt = 128;
  int64_t decode_tokens = 64;
};

// Coverage ignores tasks where the reference scores below this (see evaluate_models).
constexpr double kMinReferenceAccuracy = 0.2;

// Accuracy of guessing for a retrieval task of the suite, by its name ("kv_50": 1/50).
double retrieval_chance(const std::string& task);

namespace parallel {
class ProcessGroup;
}

// Evaluates every model directory; the first (or `reference`, when one of them) is the reference
// for coverage. Returns the eval.json document.
// With a data-parallel `group` (e.g. under `radistill launch`), model i is evaluated by rank
// i mod world size and the results are gathered; the decode-speed timings then run on rank 0 alone,
// one model after another, so that no other rank's work shares the machine while one is timed.
// Every rank returns the same document.
nlohmann::json evaluate_models(const std::vector<std::string>& model_dirs, const EvalOptions& options,
                               const std::string& reference = "", parallel::ProcessGroup* group = nullptr);

}  // namespace rad
