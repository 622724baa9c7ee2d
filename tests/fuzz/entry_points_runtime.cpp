// The fuzzed code paths of what the torch-free runtime and `serve` load (tensor store, GGUF, chat
// template), shared by the libFuzzer targets (fuzz_main.cpp) and the regression test that replays
// tests/fuzz/seeds and tests/fuzz/regressions in the normal suite. This file and what it calls use no
// libtorch, so these targets build in a minute under the sanitizers. Each returns normally on any
// input; a crash, sanitizer report or abort is a finding.
#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>
#include <unistd.h>

#include "fuzz_entry_points.h"
#include "rad/core/error.h"
#include "rad/io/gguf.h"
#include "rad/io/gguf_dequant.h"
#include "rad/io/gguf_llama_meta.h"
#include "rad/runtime/tensor_store.h"
#include "rad/serve/chat_template.h"

namespace rad::fuzz {

bool write_input(const std::string& path, const uint8_t* data, size_t size) {
  FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) return false;
  std::fwrite(data, 1, size, f);
  std::fclose(f);
  return true;
}

int gguf(const uint8_t* data, size_t size) {
  std::shared_ptr<rad::io::GgufFile> file;
  try {
    file = rad::io::GgufFile::parse("fuzz.gguf", data, size);
    for (const auto& key : file->keys()) (void)file->find(key)->size();
    for (const auto& t : file->tensors()) {
      if (!rad::io::ggml_can_dequantize(t.type)) continue;
      // The reader bounds n_elems by the bytes present (at most 2 values per byte, Q4_0), so this
      // allocation is at most a few times the input.
      std::vector<float> out(t.n_elems);
      rad::io::dequantize(t.type, file->tensor_data(t), t.n_elems, out.data());
    }
  } catch (const rad::Error&) {
    return 0;
  }
  // What the runtime does with a GGUF file it runs (Model::load): the llama configuration, then the
  // tensors under their HF names (Q/K rows re-ordered into buffers of the store), each fetched at its
  // own shape and every byte read.
  int64_t d_head = 2;
  try {
    d_head = rad::io::config_from_gguf(*file).d_head;
  } catch (const rad::Error&) {
  }
  try {
    auto store = rad::runtime::TensorStore::open_gguf(file, d_head);
    for (const auto& name : store->unused()) {
      const rad::runtime::TensorView* view = store->find(name);
      if (view == nullptr) std::abort();
      try {
        rad::runtime::DType dtype;
        const rad::runtime::TensorView& t = store->get(name, view->shape, &dtype);
        const int64_t cols = t.shape.empty() ? 1 : t.shape.back();
        const uint64_t rows = cols == 0 ? 0 : static_cast<uint64_t>(t.numel() / cols);
        if (t.bytes != rows * rad::runtime::row_bytes(dtype, cols)) std::abort();  // get() checked it
      } catch (const rad::Error&) {
      }
      uint8_t x = 0;
      for (uint64_t i = 0; i < view->bytes; ++i) x ^= view->data[i];
      static volatile uint8_t sink;
      sink = x;
    }
  } catch (const rad::Error&) {
  }
  return 0;
}

// What generate, chat, bench and serve load: the torch-free runtime's TensorStore over one file,
// then every tensor fetched through get() with its own shape and every byte read.
int tensor_store(const uint8_t* data, size_t size) {
  static const std::string path = "/tmp/rad-fuzz-tensor-store-" + std::to_string(::getpid());
  if (!write_input(path, data, size)) return 0;
  try {
    auto store = rad::runtime::TensorStore::open_file(path);
    for (const auto& name : store->unused()) {
      const rad::runtime::TensorView* view = store->find(name);
      if (view == nullptr) std::abort();  // unused() named a tensor the store does not hold
      bool computable = view->dtype_text == "F32" || view->dtype_text == "BF16" || view->dtype_text == "F16";
      rad::runtime::DType dtype;
      try {
        const rad::runtime::TensorView& t = store->get(name, view->shape, &dtype);
        // get() with the tensor's own shape fails only for dtypes the runtime cannot compute with,
        // and what it returns must span exactly numel x element size bytes.
        if (!computable || t.bytes != static_cast<uint64_t>(t.numel()) * rad::runtime::dtype_block_bytes(dtype)) std::abort();
      } catch (const rad::Error&) {
        if (computable) std::abort();
      }
      // Read every byte (ASan checks the views stay inside the mapping).
      uint8_t x = 0;
      for (uint64_t i = 0; i < view->bytes; ++i) x ^= view->data[i];
      static volatile uint8_t sink;
      sink = x;
    }
  } catch (const rad::Error&) {
  }
  return 0;
}

// The chat template of tokenizer_config.json as serve renders it: the input is the Jinja source,
// rendered for a fixed two-turn conversation.
int chat_template(const uint8_t* data, size_t size) {
  std::string source(reinterpret_cast<const char*>(data), size);
  nlohmann::json config = {{"chat_template", source}, {"bos_token", "<s>"}, {"eos_token", "</s>"}};
  nlohmann::json messages = nlohmann::json::array(
      {{{"role", "system"}, {"content", "Be brief."}}, {{"role", "user"}, {"content", "Hi <b>&\n"}}});
  try {
    auto t = rad::serve::ChatTemplate::from_config(config, "fuzz/tokenizer_config.json");
    if (t) (void)t->render(messages);
  } catch (const rad::Error&) {
  }
  return 0;
}

}  // namespace rad::fuzz
