// Synthetic retrieval tasks as seeded text generators (so any model with a tokenizer can be
// evaluated) and one scoring rule.
//
// An example is a list of text segments; some are answers. Scoring rule (all tasks): an answer is
// correct iff, teacher-forced on everything before it, the model's greedy (argmax) prediction
// equals every token of the answer (for a one-token answer: last-token argmax). MQAR scores each of
// its queries as one answer. A leading lone-space token (" 42" as SP 4 2 in digit-splitting
// tokenizers) is formatting: it is teacher-forced, not scored (tasks/scorer.cpp).
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "rad/tasks/words.h"

namespace rad::tasks {

struct Segment {
  std::string text;
  bool is_answer = false;
};

struct TaskExample {
  std::vector<Segment> segments;
  std::string full_text() const;
};

struct TaskOptions {
  int64_t pairs = 50;             // kv, mqar: dictionary size; phonebook: entries
  int64_t queries = 8;            // mqar: queries per dictionary (capped at pairs)
  int64_t context_words = 400;    // needle: filler length in words
  double depth = 0.5;             // needle: position of the needle in the filler, 0 (start) .. 1 (end)
  int64_t needles = 4;            // multineedle: facts hidden in the filler (one is asked)
  int64_t span_words = 8;         // copy: words to copy
  KeySplit split = KeySplit::kEval;
  // When non-empty, keys (kv, mqar, needle, copy) come from this list instead of `split`'s pool,
  // e.g. other single-token words of a teacher's corpus (`eval-tasks --key-file`).
  std::vector<std::string> custom_keys;
};

// The key words `options` draws from: custom_keys when given, else the split's pool.
const std::vector<std::string>& keys_for(const TaskOptions& options);

// Names accepted by make_example: kv, mqar, needle, multineedle, phonebook, copy.
// multineedle: `needles` facts of the needle's form ("The secret number of the KEY is N."), distinct
// keys and numbers, at random places in `context_words` of filler; one of them is asked. A single
// needle fits in any recurrent state; several of the same form make the model find the right one
// (a state that keeps "the last secret number" answers 1 in `needles`).
const std::vector<std::string>& task_names();

// One example of `task`, drawn with `rng`. Throws rad::Error for an unknown task or options it
// cannot satisfy (e.g. more pairs than distinct keys or values).
TaskExample make_example(const std::string& task, const TaskOptions& options, std::mt19937_64& rng);

// `count` examples from a generator seeded with `seed` (same seed, same examples).
std::vector<TaskExample> make_examples(const std::string& task, const TaskOptions& options, int64_t count,
                                       uint64_t seed);

// The KV-retrieval probe of docs/DESIGN.md section 2 (values 0-99, so at most 100 pairs).
TaskExample make_kv_example(const TaskOptions& options, std::mt19937_64& rng, int64_t n_queries);

}  // namespace rad::tasks
