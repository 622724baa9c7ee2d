#include "rad/eval/user_tasks.h"

#include <nlohmann/json.hpp>
#include <sstream>

#include "rad/core/atomic_file.h"
#include "rad/core/error.h"
#include "rad/model/generate.h"

namespace rad {


namespace {
std::string trim(const std::string& s) {
  size_t a = s.find_first_not_of(" \t\r\n"), b = s.find_last_not_of(" \t\r\n");
  return a == std::string::npos ? "" : s.substr(a, b - a + 1);
}
}  // namespace

UserTaskScores score_user_tasks(CausalLM& model, const std::vector<UserTask>& tasks, const tasks::Encoder& encode,
                                const Decoder& decode, std::optional<int64_t> bos, int64_t max_new_tokens) {
  at::NoGradGuard no_grad;
  UserTaskScores s;
  const int64_t ctx_limit = model->config().max_position_embeddings;
  for (const auto& t : tasks) {
    if (t.multiple_choice) {
      std::vector<int64_t> ctx = encode(t.context);
      if (bos) ctx.insert(ctx.begin(), *bos);
      RAD_CHECK(!ctx.empty(), "multiple-choice context encodes to no tokens (and the tokenizer has no BOS)");
      double best = -1e300;
      int64_t pick = -1;
      for (size_t c = 0; c < t.choices.size(); ++c) {
        std::vector<int64_t> ids = ctx, cont = encode(t.choices[c]);
        ids.insert(ids.end(), cont.begin(), cont.end());
        RAD_CHECK(static_cast<int64_t>(ids.size()) <= ctx_limit, "a multiple-choice item of {} tokens exceeds the context of {}",
                  ids.size(), ctx_limit);
        at::Tensor logp = at::log_softmax(model->forward(at::tensor(ids, at::kLong).unsqueeze(0))[0].to(at::kFloat), -1);
        double total = 0;
        for (size_t k = 0; k < cont.size(); ++k) total += logp[ctx.size() + k - 1][cont[k]].item<double>();
        if (total > best) {
          best = total;
          pick = static_cast<int64_t>(c);
        }
      }
      s.multiple_choice.total += 1;
      s.multiple_choice.correct += pick == t.answer_index ? 1 : 0;
    } else {
      std::vector<int64_t> prompt = encode(t.prompt);
      if (bos) prompt.insert(prompt.begin(), *bos);
      GenerateOptions o;
      o.max_new_tokens = max_new_tokens;
      GenerateResult r = generate_greedy(model, prompt, o);
      std::string text = decode(r.tokens);
      size_t nl = text.find('\n', text.find_first_not_of("\n"));
      if (nl != std::string::npos) text = text.substr(0, nl);
      bool ok = t.contains ? text.find(t.answer) != std::string::npos : trim(text) == trim(t.answer);
      s.generation.total += 1;
      s.generation.correct += ok ? 1 : 0;
    }
  }
  return s;
}

}  // namespace rad
