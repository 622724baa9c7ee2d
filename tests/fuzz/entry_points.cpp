// The fuzzed code paths that need libtorch, shared by the libFuzzer targets (fuzz_main.cpp) and the
// regression test that replays tests/fuzz/regressions/ in the normal suite. Each returns normally on
// any input; a crash, sanitizer report or abort is a finding. The torch-free ones (what the runtime
// and serve load) are in entry_points_runtime.cpp.
#include "rad/core/error.h"
#include "rad/eval/user_tasks.h"
#include "rad/heads/head_plan.h"
#include "rad/io/hf_config.h"
#include "rad/io/safetensors.h"
#include "rad/tokenizer/tokenizer.h"
#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>
#include <unistd.h>
#include "fuzz_entry_points.h"

namespace {
const rad::Tokenizer& tokenizer(const char* name) {
  static const std::string root = std::getenv("RAD_FUZZ_TOKENIZERS") ? std::getenv("RAD_FUZZ_TOKENIZERS")
                                                                     : RAD_SOURCE_DIR "/tests/fixtures/tokenizers";
  static const rad::Tokenizer llama3 = rad::Tokenizer::load(root + "/llama3");
  static const rad::Tokenizer llama2 = rad::Tokenizer::load(root + "/llama2");
  return std::string(name) == "llama3" ? llama3 : llama2;
}

bool valid_utf8(const std::string& s) {
  size_t i = 0;
  while (i < s.size()) {
    unsigned char c = s[i];
    int n = c < 0x80 ? 0 : (c >> 5) == 6 ? 1 : (c >> 4) == 14 ? 2 : (c >> 3) == 30 ? 3 : -1;
    if (n < 0 || i + n >= s.size() + (n == 0 ? 1 : 0)) return false;
    uint32_t cp = n == 0 ? c : c & (0x3f >> n);
    for (int k = 1; k <= n; ++k) {
      unsigned char d = s[i + k];
      if ((d >> 6) != 2) return false;
      cp = (cp << 6) | (d & 0x3f);
    }
    if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff))
      return false;
    i += n + 1;
  }
  return true;
}

}  // namespace

namespace rad::fuzz {

int safetensors(const uint8_t* data, size_t size) {
  static const std::string path = "/tmp/rad-fuzz-safetensors-" + std::to_string(::getpid());
  if (!write_input(path, data, size)) return 0;
  try {
    auto file = rad::io::SafetensorsFile::open(path);
    for (const auto& e : file->entries()) {
      at::Tensor t = file->tensor(e.name);
      if (t.numel() > 0) (void)t.sum().item<double>();  // touch every byte of every tensor
    }
  } catch (const rad::Error&) {
  }
  return 0;
}

int hf_config(const uint8_t* data, size_t size) {
  nlohmann::json j = nlohmann::json::parse(data, data + size, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return 0;
  try {
    rad::ModelConfig c = rad::io::config_from_hf_json(j, "fuzz/config.json");
    (void)rad::io::config_to_hf_json(c).dump();
  } catch (const rad::Error&) {
  }
  return 0;
}

int head_plan(const uint8_t* data, size_t size) {
  nlohmann::json j = nlohmann::json::parse(data, data + size, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return 0;
  rad::ModelConfig c;
  c.n_layer = 6;
  c.n_head = 8;
  c.n_head_kv = 4;
  try {
    rad::HeadPlan plan = rad::HeadPlan::from_json(j, c, "fuzz/plan.json", "fnv1a64:0123456789abcdef");
    for (int64_t l = 0; l < c.n_layer; ++l) (void)plan.kv_groups(l, c);
    (void)plan.to_json(c).dump();
  } catch (const rad::Error&) {
  }
  return 0;
}

int tokenizer_json(const uint8_t* data, size_t size) {
  nlohmann::json j = nlohmann::json::parse(data, data + size, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return 0;
  try {
    rad::Tokenizer tok = rad::Tokenizer::from_json(j, nlohmann::json());
    auto ids = tok.encode("Hello world: 42 \xe2\x82\xac caf\xc3\xa9\n\tend", true);
    (void)tok.decode(ids, false);
  } catch (const rad::Error&) {
  }
  return 0;
}

int tokenizer_encode(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  const rad::Tokenizer& l3 = tokenizer("llama3");
  auto ids = l3.encode(text, false);
  std::string back = l3.decode(ids, false);
  if (valid_utf8(text) && back != text) std::abort();  // byte-level BPE must round-trip
  const rad::Tokenizer& l2 = tokenizer("llama2");
  (void)l2.decode(l2.encode(text, true), true);
  return 0;
}

int user_tasks(const uint8_t* data, size_t size) {
  try {
    auto tasks = rad::parse_user_tasks(std::string(reinterpret_cast<const char*>(data), size), "fuzz.jsonl");
    for (const auto& t : tasks) (void)(t.context.size() + t.prompt.size() + t.answer.size() + t.choices.size());
  } catch (const rad::Error&) {
  }
  return 0;
}

}  // namespace rad::fuzz
