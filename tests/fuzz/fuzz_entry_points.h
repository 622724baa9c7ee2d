// Entry points of the fuzz targets (see entry_points.cpp and, torch-free, entry_points_runtime.cpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace rad::fuzz {

int safetensors(const uint8_t* data, size_t size);
int hf_config(const uint8_t* data, size_t size);
int head_plan(const uint8_t* data, size_t size);
int tokenizer_json(const uint8_t* data, size_t size);
int tokenizer_encode(const uint8_t* data, size_t size);
int user_tasks(const uint8_t* data, size_t size);
int gguf(const uint8_t* data, size_t size);
int tensor_store(const uint8_t* data, size_t size);
int chat_template(const uint8_t* data, size_t size);

// The readers memory-map files, so a target writes its input to `path` first (one per target and
// process); false when the file cannot be written.
bool write_input(const std::string& path, const uint8_t* data, size_t size);

// Names of the targets, as used in scripts/fuzz.sh and the corpus folders.
inline const std::vector<std::string>& target_names() {
  static const std::vector<std::string> names = {"safetensors", "hf_config", "head_plan", "tokenizer_json", "tokenizer_encode", "user_tasks", "gguf", "tensor_store", "chat_template"};
  return names;
}

}  // namespace rad::fuzz
