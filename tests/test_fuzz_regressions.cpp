// Replays every fuzz seed and every regression input (tests/fuzz/seeds/TARGET/*,
// tests/fuzz/regressions/TARGET/*) through the fuzzed code paths in the normal, unsanitized
// build: each must return normally (a crash or abort fails the whole test binary).
#include <filesystem>
#include <fstream>
#include <sstream>

#include "fuzz/fuzz_entry_points.h"
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

}  // namespace
}  // namespace rad::test
