#include "rad/eval/user_tasks.h"

#include <nlohmann/json.hpp>
#include <sstream>

#include "rad/core/atomic_file.h"
#include "rad/core/error.h"
#include "rad/model/generate.h"

namespace rad {

std::vector<UserTask> parse_user_tasks(const std::string& text, const std::string& where) {
  std::vector<UserTask> out;
  std::istringstream in(text);
  std::string line;
  int64_t n = 0;
  while (std::getline(in, line)) {
    ++n;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    std::string at = where + ":" + std::to_string(n);
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception& e) {
      fail("{}: not valid JSON: {}", at, e.what());
    }
    RAD_CHECK(j.is_object(), "{}: each line must be a JSON object", at);
    UserTask t;
    if (j.contains("choices")) {
      t.multiple_choice = true;
      RAD_CHECK(j.contains("context") && j["context"].is_string(), "{}: multiple choice needs a string \"context\"", at);
      RAD_CHECK(j["choices"].is_array() && j["choices"].size() >= 2, "{}: \"choices\" must be an array of at least 2 strings", at);
      for (const auto& c : j["choices"]) {
        RAD_CHECK(c.is_string() && !c.get<std::string>().empty(), "{}: every choice must be a non-empty string", at);
        t.choices.push_back(c.get<std::string>());
      }
      t.context = j["context"].get<std::string>();
      RAD_CHECK(j.contains("answer"), "{}: missing \"answer\" (index or choice text)", at);
      const auto& a = j["answer"];
      if (a.is_number_integer()) {
        t.answer_index = a.get<int64_t>();
        RAD_CHECK(t.answer_index >= 0 && t.answer_index < static_cast<int64_t>(t.choices.size()),
                  "{}: answer index {} out of range for {} choices", at, t.answer_index, t.choices.size());
      } else if (a.is_string()) {
        auto it = std::find(t.choices.begin(), t.choices.end(), a.get<std::string>());
        RAD_CHECK(it != t.choices.end(), "{}: answer \"{}\" is not one of the choices", at, a.get<std::string>());
        t.answer_index = it - t.choices.begin();
      } else {
        fail("{}: \"answer\" must be a choice index or the choice text", at);
      }
    } else {
      RAD_CHECK(j.contains("prompt") && j["prompt"].is_string(),
                "{}: expected {{\"context\", \"choices\", \"answer\"}} or {{\"prompt\", \"answer\"}}", at);
      RAD_CHECK(j.contains("answer") && j["answer"].is_string() && !j["answer"].get<std::string>().empty(),
                "{}: generation needs a non-empty string \"answer\"", at);
      t.prompt = j["prompt"].get<std::string>();
      t.answer = j["answer"].get<std::string>();
      std::string match = j.value("match", std::string("exact"));
      RAD_CHECK(match == "exact" || match == "contains", "{}: \"match\" must be \"exact\" or \"contains\", got \"{}\"", at,
                match);
      t.contains = match == "contains";
    }
    out.push_back(std::move(t));
  }
  RAD_CHECK(!out.empty(), "{}: no tasks", where);
  return out;
}

std::vector<UserTask> load_user_tasks(const std::string& path) { return parse_user_tasks(read_text_file(path), path); }

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
