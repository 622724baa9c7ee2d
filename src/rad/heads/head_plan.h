// A head plan: which query heads of which layers stay softmax attention in the hybrid.
//
// plan.json: {"kept_heads": [[layer, head], ...], "kv_groups": {"<layer>": [group, ...]},
//             "selector": {...}, "n_layer", "n_head", "n_head_kv", "model_hash"}
// Only kept_heads is required in a hand-written plan; the rest is checked when present.
#pragma once

#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "rad/model/config.h"

namespace rad {

struct HeadPlan {
  std::vector<std::pair<int64_t, int64_t>> kept_heads;  // sorted (layer, head), unique
  nlohmann::json selector = nlohmann::json::object();
  std::string model_hash;  // empty when unknown

  // Kept query heads of `layer`, ascending.
  std::vector<int64_t> heads_in_layer(int64_t layer) const;
  // KV groups `layer` needs (head / n_group for each kept head), ascending, unique.
  std::vector<int64_t> kv_groups(int64_t layer, const ModelConfig& config) const;
  int64_t size() const { return static_cast<int64_t>(kept_heads.size()); }

  nlohmann::json to_json(const ModelConfig& config) const;
  // Parses and validates against `config` (layer and head in range, no duplicates, matching sizes
  // and model hash when the file states them). `where` names the file in errors.
  static HeadPlan from_json(const nlohmann::json& j, const ModelConfig& config, const std::string& where,
                            const std::string& model_hash = "");
  static HeadPlan load(const std::string& path, const ModelConfig& config, const std::string& model_hash = "");
  void save(const std::string& path, const ModelConfig& config) const;
};

}  // namespace rad
