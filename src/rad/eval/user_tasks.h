// User-supplied tasks from a JSONL file, so data exported from standard benchmarks can be run:
//   multiple choice  {"context": str, "choices": [str, ...], "answer": index or the choice text}
//     scored by log-likelihood: the choice whose tokens have the highest summed log-probability
//     after the context is the model's answer;
//   generation       {"prompt": str, "answer": str, "match": "exact" (default) | "contains"}
//     scored on the greedy continuation up to the first newline (or max_new_tokens): exact = equal
//     after trimming spaces, contains = the answer occurs in it.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "rad/model/causal_lm.h"
#include "rad/tasks/scorer.h"

namespace rad {

struct UserTask {
  bool multiple_choice = false;
  std::string context;               // multiple choice
  std::vector<std::string> choices;  // multiple choice
  int64_t answer_index = 0;          // multiple choice
  std::string prompt;                // generation
  std::string answer;                // generation
  bool contains = false;             // generation: "contains" match
};

// Parses and validates; errors name the file and line.
std::vector<UserTask> load_user_tasks(const std::string& path);
std::vector<UserTask> parse_user_tasks(const std::string& text, const std::string& where);

struct UserTaskScores {
  tasks::Accuracy multiple_choice;
  tasks::Accuracy generation;
};

using Decoder = std::function<std::string(const std::vector<int64_t>&)>;

UserTaskScores score_user_tasks(CausalLM& model, const std::vector<UserTask>& tasks, const tasks::Encoder& encode,
                                const Decoder& decode, std::optional<int64_t> bos, int64_t max_new_tokens = 32);

}  // namespace rad
