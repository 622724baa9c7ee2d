#include "rad/io/shard_index.h"

#include <filesystem>
#include <nlohmann/json.hpp>

#include "rad/core/atomic_file.h"
#include "rad/core/error.h"

namespace rad::io {
namespace fs = std::filesystem;
using nlohmann::json;

ShardIndex read_shard_index(const std::string& model_dir) {
  fs::path dir(model_dir);
  RAD_CHECK(fs::is_directory(dir), "{}: not a directory (expected a Hugging Face model directory)", model_dir);
  ShardIndex out;
  fs::path single = dir / "model.safetensors", index = dir / "model.safetensors.index.json";
  if (fs::exists(single)) {
    out.single_file = single.string();
    return out;
  }
  RAD_CHECK(fs::exists(index), "{}: no model.safetensors or model.safetensors.index.json found", model_dir);
  out.index_path = index.string();
  json j;
  try {
    j = json::parse(read_text_file(out.index_path));
  } catch (const json::exception& e) {
    fail("{}: not valid JSON: {}", out.index_path, e.what());
  }
  RAD_CHECK(j.is_object() && j.contains("weight_map") && j["weight_map"].is_object(),
            "{}: missing object field \"weight_map\"", out.index_path);
  for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
    RAD_CHECK(it.value().is_string(), "{}: weight_map[\"{}\"] must be a file name", out.index_path, it.key());
    std::string file = it.value().get<std::string>();
    // A plain name only: an index must not make us read files outside the model directory.
    RAD_CHECK(!file.empty() && file.find('/') == std::string::npos && file.find('\\') == std::string::npos &&
                  file != "." && file != "..",
              "{}: weight_map[\"{}\"] = \"{}\" is not a plain file name in the model directory", out.index_path,
              it.key(), file);
    out.shards[(dir / file).string()].insert(it.key());
  }
  for (const auto& [shard, names] : out.shards)
    RAD_CHECK(fs::exists(shard), "{}: shard {} listed in the index does not exist", out.index_path, shard);
  return out;
}

}  // namespace rad::io
