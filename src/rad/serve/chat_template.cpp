#include "rad/serve/chat_template.h"

#include <filesystem>
#include <fstream>

#include "rad/core/error.h"
#include "rad/io/gguf.h"
#include "rad/io/gguf_llama_meta.h"

namespace rad::serve {
namespace {

// bos_token / eos_token are a string or an AddedToken object {"content": ...}.
std::string token_text(const nlohmann::json& config, const char* key) {
  auto it = config.find(key);
  if (it == config.end() || it->is_null()) return "";
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object() && it->contains("content") && (*it)["content"].is_string()) return (*it)["content"].get<std::string>();
  return "";
}

}  // namespace

std::optional<ChatTemplate> ChatTemplate::from_config(const nlohmann::json& config, const std::string& where) {
  RAD_CHECK(config.is_object(), "{}: expected a JSON object", where);
  auto it = config.find("chat_template");
  if (it == config.end() || it->is_null()) return std::nullopt;
  std::string source;
  if (it->is_string()) {
    source = it->get<std::string>();
  } else if (it->is_array()) {
    for (const auto& t : *it)
      if (t.is_object() && t.value("name", "") == "default" && t.contains("template") && t["template"].is_string())
        source = t["template"].get<std::string>();
    RAD_CHECK(!source.empty(), "{}: chat_template is a list without a {{\"name\": \"default\", \"template\": ...}} entry", where);
  } else {
    fail("{}: chat_template must be a string or a list of {{name, template}}, got {}", where, it->type_name());
  }
  ChatTemplate t;
  try {
    t.template_ = JinjaTemplate::parse(source);
  } catch (const Error& e) {
    fail("{}: {}", where, e.what());
  }
  t.bos_token_ = token_text(config, "bos_token");
  t.eos_token_ = token_text(config, "eos_token");
  return t;
}

std::optional<ChatTemplate> ChatTemplate::load(const std::string& model_dir) {
  if (std::filesystem::is_regular_file(model_dir))  // a GGUF file: tokenizer.chat_template
    return from_config(io::tokenizer_from_gguf(*io::GgufFile::open(model_dir)).second, model_dir);
  const std::string path = model_dir + "/tokenizer_config.json";
  if (!std::filesystem::exists(path)) return std::nullopt;
  std::ifstream in(path);
  RAD_CHECK(in.good(), "cannot read {}", path);
  nlohmann::json config;
  try {
    config = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    fail("{}: invalid JSON: {}", path, e.what());
  }
  return from_config(config, path);
}

std::string ChatTemplate::render(const nlohmann::json& messages) const {
  nlohmann::json context = {{"messages", messages},
                            {"add_generation_prompt", true},
                            {"bos_token", bos_token_},
                            {"eos_token", eos_token_}};
  return template_.render(context);
}

}  // namespace rad::serve
