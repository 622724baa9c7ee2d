// Parsing of user task files, apart from the scoring so the fuzz build links it alone.
#include <algorithm>
#include <nlohmann/json.hpp>
#include <sstream>

#include "rad/core/atomic_file.h"
#include "rad/core/error.h"
#include "rad/eval/user_tasks.h"

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

}  // namespace rad
