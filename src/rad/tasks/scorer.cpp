#include "rad/tasks/scorer.h"

#include <algorithm>
#include <cmath>
#include <optional>

#include "rad/core/error.h"

namespace rad::tasks {

std::optional<int64_t> leading_bos(const Tokenizer& tok) {
  std::vector<int64_t> plain = tok.encode("a", false), special = tok.encode("a", true);
  if (special.size() > plain.size() && !std::equal(plain.begin(), plain.end(), special.begin())) return special.front();
  return std::nullopt;
}

EncodedExample encode_example(const TaskExample& example, const Encoder& encode, std::optional<int64_t> bos) {
  EncodedExample out;
  if (bos) out.ids.push_back(*bos);
  // Tokenizers that split digits (SmolLM2, Qwen2, the default teacher's) write " 42" as a lone
  // space token then the digits. That space says only "a number follows", not which one, so it is
  // teacher-forced like the prompt (the full text's tokens are unchanged) and not scored: otherwise
  // a model that knows the value but ranks another continuation of "is" first scores 0.
  std::optional<int64_t> lone_space;
  bool lone_space_known = false;
  for (const auto& seg : example.segments) {
    std::vector<int64_t> ids = encode(seg.text);
    int64_t begin = static_cast<int64_t>(out.ids.size());
    out.ids.insert(out.ids.end(), ids.begin(), ids.end());
    if (seg.is_answer) {
      RAD_CHECK(!ids.empty(), "task answer \"{}\" encodes to no tokens", seg.text);
      RAD_CHECK(begin > 0, "a task answer cannot be the first token of an example");
      if (ids.size() > 1 && seg.text.size() > 1 && seg.text[0] == ' ') {
        if (!lone_space_known) {
          std::vector<int64_t> sp = encode(" ");
          if (sp.size() == 1) lone_space = sp[0];
          lone_space_known = true;
        }
        if (lone_space && ids[0] == *lone_space) ++begin;
      }
      out.answers.emplace_back(begin, static_cast<int64_t>(out.ids.size()));
    }
  }
  return out;
}

double Accuracy::low() const {
  if (total == 0 || correct == 0) return 0.0;
  const double z = 1.959963984540054, n = static_cast<double>(total), p = value();
  double centre = (p + z * z / (2 * n)) / (1 + z * z / n);
  double half = z * std::sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n);
  return std::max(0.0, centre - half);
}

double Accuracy::high() const {
  if (total == 0) return 0.0;
  if (correct == total) return 1.0;
  const double z = 1.959963984540054, n = static_cast<double>(total), p = value();
  double centre = (p + z * z / (2 * n)) / (1 + z * z / n);
  double half = z * std::sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n);
  return std::min(1.0, centre + half);
}

int64_t max_length(const std::vector<EncodedExample>& examples) {
  int64_t n = 0;
  for (const auto& e : examples) n = std::max<int64_t>(n, e.ids.size());
  return n;
}

std::vector<uint8_t> answer_correctness(CausalLM& model, const std::vector<EncodedExample>& examples,
                                        int64_t batch_size, const ForwardHooks* hooks) {
  RAD_CHECK(batch_size >= 1, "batch size must be >= 1");
  at::NoGradGuard no_grad;
  std::vector<uint8_t> correct;
  for (size_t start = 0; start < examples.size(); start += batch_size) {
    size_t end = std::min(examples.size(), start + static_cast<size_t>(batch_size));
    int64_t T = 0;
    for (size_t i = start; i < end; ++i) T = std::max<int64_t>(T, examples[i].ids.size());
    RAD_CHECK(T <= model->config().max_position_embeddings,
              "task example of {} tokens exceeds the model's context ({} tokens); use fewer pairs or a shorter context",
              T, model->config().max_position_embeddings);
    at::Tensor ids = at::zeros({static_cast<int64_t>(end - start), T}, at::kLong);
    auto acc = ids.accessor<int64_t, 2>();
    // Positions whose next-token prediction is scored: p - 1 for every answer token p.
    std::vector<int64_t> rows, cols;
    for (size_t i = start; i < end; ++i) {
      const auto& ex = examples[i];
      for (size_t t = 0; t < ex.ids.size(); ++t) acc[i - start][t] = ex.ids[t];
      for (const auto& [b, e] : ex.answers)
        for (int64_t p = b; p < e; ++p) {
          rows.push_back(i - start);
          cols.push_back(p - 1);
        }
    }
    at::Tensor hidden = model->run_layers(model->embed(ids), 0, model->config().n_layer, nullptr, hooks);
    at::Tensor picked = hidden.index({at::tensor(rows, at::kLong), at::tensor(cols, at::kLong)});  // [N, d]
    at::Tensor pred = model->final_logits(picked).argmax(-1).to(at::kCPU).contiguous();
    const int64_t* p = pred.data_ptr<int64_t>();
    size_t k = 0;
    for (size_t i = start; i < end; ++i)
      for (const auto& [b, e] : examples[i].answers) {
        bool ok = true;
        for (int64_t t = b; t < e; ++t) ok = ok && (p[k++] == examples[i].ids[t]);
        correct.push_back(ok ? 1 : 0);
      }
  }
  return correct;
}

Accuracy score(CausalLM& model, const std::vector<EncodedExample>& examples, int64_t batch_size,
               const ForwardHooks* hooks) {
  Accuracy a;
  for (uint8_t c : answer_correctness(model, examples, batch_size, hooks)) {
    a.correct += c;
    a.total += 1;
  }
  return a;
}

}  // namespace rad::tasks
