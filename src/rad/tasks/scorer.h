// Scores task examples on a causal LM with the rule stated in task.h (teacher-forced greedy exact
// match of every answer token), batched.
#pragma once

#include <ATen/ATen.h>

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "rad/model/causal_lm.h"
#include "rad/tasks/task.h"
#include "rad/tokenizer/tokenizer.h"

namespace rad::tasks {

// Text -> token ids, without special tokens.
using Encoder = std::function<std::vector<int64_t>(const std::string&)>;

// The BOS id the tokenizer's post-processor puts before a text (e.g. Llama's <s>), if any (none for
// Qwen2): what task examples start with, as the checkpoint expects.
std::optional<int64_t> leading_bos(const Tokenizer& tokenizer);

struct EncodedExample {
  std::vector<int64_t> ids;
  std::vector<std::pair<int64_t, int64_t>> answers;  // [begin, end) token ranges of the answers
};

// Encodes segment by segment (segment boundaries sit at pre-token boundaries: answers start with a
// space), so answer tokens are exactly the answer's own encoding. `bos` is prepended when given.
EncodedExample encode_example(const TaskExample& example, const Encoder& encode, std::optional<int64_t> bos);

struct Accuracy {
  int64_t correct = 0;
  int64_t total = 0;
  double value() const { return total > 0 ? static_cast<double>(correct) / total : 0.0; }
  // Wilson score interval at 95%.
  double low() const;
  double high() const;
};

// For each answer of each example (in order), whether the model gets it right. Examples are
// batched `batch_size` at a time, right-padded (causal attention keeps padding out of real
// positions). `hooks` (head ablation) apply to every forward.
std::vector<uint8_t> answer_correctness(CausalLM& model, const std::vector<EncodedExample>& examples,
                                        int64_t batch_size, const ForwardHooks* hooks = nullptr);

Accuracy score(CausalLM& model, const std::vector<EncodedExample>& examples, int64_t batch_size,
               const ForwardHooks* hooks = nullptr);

// Longest example in tokens.
int64_t max_length(const std::vector<EncodedExample>& examples);

}  // namespace rad::tasks
