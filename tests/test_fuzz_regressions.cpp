// Replays every fuzz seed and every regression input (tests/fuzz/seeds/TARGET/*,
// tests/fuzz/regressions/TARGET/*) through the fuzzed code paths in the normal, unsanitized
// build: each must return normally (a crash or abort fails the whole test binary).
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "fuzz/fuzz_entry_points.h"
#include "rad/serve/chat_template.h"
#include "test_util.h"

namespace rad::test {
namespace {

namespace fs = std::filesystem;

int (*entry_point(const std::string& name))(const uint8_t*, size_t) {
  if (name == "safetensors") return rad::fuzz::safetensors;
  if (name == "hf_config") return rad::fuzz::hf_config;
  if (name == "head_plan") return rad::fuzz::head_plan;
  if (name == "tokenizer_json") return rad::fuzz::tokenizer_json;
  if (name == "user_tasks") return rad::fuzz::user_tasks;
  if (name == "tokenizer_encode") return rad::fuzz::tokenizer_encode;
  if (name == "gguf") return rad::fuzz::gguf;
  if (name == "tensor_store") return rad::fuzz::tensor_store;
  if (name == "chat_template") return rad::fuzz::chat_template;
  return nullptr;
}

TEST(FuzzRegressions, EverySeedAndRegressionInputIsHandled) {
  int replayed = 0;
  for (const char* kind : {"seeds", "regressions"}) {
    fs::path root = fs::path(source_dir()) / "tests/fuzz" / kind;
    if (!fs::exists(root)) continue;
    for (const auto& dir : fs::directory_iterator(root)) {
      if (!dir.is_directory()) continue;
      auto fn = entry_point(dir.path().filename().string());
      ASSERT_NE(fn, nullptr) << "unknown fuzz target folder " << dir.path();
      for (const auto& file : fs::directory_iterator(dir.path())) {
        std::ifstream in(file.path(), std::ios::binary);
        std::stringstream ss;
        ss << in.rdbuf();
        std::string bytes = ss.str();
        EXPECT_EQ(fn(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()), 0) << file.path();
        ++replayed;
      }
    }
  }
  EXPECT_GE(replayed, 5 * 1) << "every target has at least one seed";
}

std::string read_regression(const std::string& target, const std::string& name) {
  std::ifstream in(fs::path(source_dir()) / "tests/fuzz/regressions" / target / name, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The chat_template findings of 2026-12-07: not only no crash (the replay above) but the renderer's
// own error (rad::Error, "chat template: ...", naming the file when loading) for each.
TEST(FuzzRegressions, ChatTemplateFindingsAreTemplateErrors) {
  const nlohmann::json messages = nlohmann::json::array({{{"role", "user"}, {"content", "Hi"}}});
  auto config = [](const std::string& source) {
    return nlohmann::json{{"chat_template", source}, {"bos_token", "<s>"}, {"eos_token", "</s>"}};
  };
  // `{{ 99999999999999999999 }}`: std::stoll threw std::out_of_range out of the parser.
  const std::string big = read_regression("chat_template", "int_literal_beyond_int64.jinja");
  ASSERT_EQ(big, "{{ 99999999999999999999 }}");
  EXPECT_RAD_ERROR(serve::ChatTemplate::from_config(config(big), "m/tokenizer_config.json"),
                   "m/tokenizer_config.json: chat template: integer literal 99999999999999999999 is out of range");
  // `{{ undefined_name['\xce\x90\x91\x8b'] }}`: the error message dumped the key with
  // nlohmann's default dump, which threw type_error 316 (invalid UTF-8); the invalid bytes are
  // U+FFFD in the message now (\xce\x90 is a valid U+0390 and stays).
  const std::string key = read_regression("chat_template", "invalid_utf8_index_key.jinja");
  ASSERT_NE(key.find("\xce\x90\x91\x8b"), std::string::npos);
  auto t = serve::ChatTemplate::from_config(config(key), "m/tokenizer_config.json");
  ASSERT_TRUE(t.has_value());
  EXPECT_RAD_ERROR(t->render(messages), "chat template: cannot index an undefined value with \"\xce\x90\xef\xbf\xbd\xef\xbf\xbd\"");
  // Hundreds of nested '[' (a 2 KB mutation of a Llama-3 template): the recursive-descent parser
  // overflowed the stack under ASan; nesting is bounded now.
  const std::string nested = read_regression("chat_template", "nested_brackets_stack_overflow.jinja");
  EXPECT_RAD_ERROR(serve::ChatTemplate::from_config(config(nested), "m/tokenizer_config.json"),
                   "m/tokenizer_config.json: chat template: expression nested more than 100 levels deep");
}

}  // namespace
}  // namespace rad::test
