// Where a Hugging Face model directory keeps its weights: one `model.safetensors`, or shards listed
// in `model.safetensors.index.json` ({"weight_map": {tensor name: shard file}}). Shared by the
// libtorch loader (io/checkpoint) and the runtime's memory-mapped store (runtime/tensor_store), so
// both accept and reject exactly the same directories. Torch-free.
#pragma once

#include <map>
#include <set>
#include <string>

namespace rad::io {

struct ShardIndex {
  std::string single_file;  // path of model.safetensors when present (then `shards` is empty)
  std::string index_path;   // path of the index when the weights are sharded
  std::map<std::string, std::set<std::string>> shards;  // shard path -> tensor names the index maps to it
};

// Errors name the directory or index file and what was expected: no weights, invalid JSON, a
// missing "weight_map", a shard name that is not a plain file name, a listed shard that is absent.
ShardIndex read_shard_index(const std::string& model_dir);

}  // namespace rad::io
