#include "rad/heads/head_plan.h"

#include <algorithm>

#include "rad/core/atomic_file.h"
#include "rad/core/error.h"

namespace rad {

std::vector<int64_t> HeadPlan::heads_in_layer(int64_t layer) const {
  std::vector<int64_t> out;
  for (const auto& [l, h] : kept_heads)
    if (l == layer) out.push_back(h);
  return out;
}

std::vector<int64_t> HeadPlan::kv_groups(int64_t layer, const ModelConfig& config) const {
  std::set<int64_t> groups;
  for (int64_t h : heads_in_layer(layer)) groups.insert(h / config.n_group());
  return {groups.begin(), groups.end()};
}

nlohmann::json HeadPlan::to_json(const ModelConfig& config) const {
  nlohmann::json kept = nlohmann::json::array();
  for (const auto& [l, h] : kept_heads) kept.push_back({l, h});
  nlohmann::json groups = nlohmann::json::object();
  for (int64_t l = 0; l < config.n_layer; ++l) {
    auto g = kv_groups(l, config);
    if (!g.empty()) groups[std::to_string(l)] = g;
  }
  nlohmann::json j = {{"kept_heads", kept},         {"kv_groups", groups},        {"n_kept", size()},
                      {"n_layer", config.n_layer},  {"n_head", config.n_head},    {"n_head_kv", config.n_head_kv},
                      {"selector", selector}};
  if (!model_hash.empty()) j["model_hash"] = model_hash;
  return j;
}

HeadPlan HeadPlan::from_json(const nlohmann::json& j, const ModelConfig& c, const std::string& where,
                             const std::string& expected_hash) {
  RAD_CHECK(j.is_object(), "{}: a head plan must be a JSON object", where);
  RAD_CHECK(j.contains("kept_heads") && j["kept_heads"].is_array(),
            "{}: missing array \"kept_heads\" (expected [[layer, head], ...])", where);
  HeadPlan plan;
  std::set<std::pair<int64_t, int64_t>> seen;
  for (const auto& item : j["kept_heads"]) {
    RAD_CHECK(item.is_array() && item.size() == 2 && item[0].is_number_integer() && item[1].is_number_integer(),
              "{}: kept_heads entry {} is not [layer, head]", where, item.dump());
    int64_t l = item[0].get<int64_t>(), h = item[1].get<int64_t>();
    RAD_CHECK(l >= 0 && l < c.n_layer, "{}: kept head [{}, {}]: layer {} out of range (the model has {} layers)", where,
              l, h, l, c.n_layer);
    RAD_CHECK(h >= 0 && h < c.n_head, "{}: kept head [{}, {}]: head {} out of range (the model has {} query heads per layer)",
              where, l, h, h, c.n_head);
    RAD_CHECK(seen.insert({l, h}).second, "{}: kept head [{}, {}] is listed twice", where, l, h);
  }
  plan.kept_heads.assign(seen.begin(), seen.end());
  auto check_size = [&](const char* key, int64_t expected) {
    if (j.contains(key))
      RAD_CHECK(j[key].is_number_integer() && j[key].get<int64_t>() == expected,
                "{}: \"{}\" is {} but the model has {}; this plan was made for another model", where, key, j[key].dump(),
                expected);
  };
  check_size("n_layer", c.n_layer);
  check_size("n_head", c.n_head);
  check_size("n_head_kv", c.n_head_kv);
  if (j.contains("model_hash")) {
    RAD_CHECK(j["model_hash"].is_string(), "{}: \"model_hash\" must be a string", where);
    plan.model_hash = j["model_hash"].get<std::string>();
    RAD_CHECK(expected_hash.empty() || plan.model_hash == expected_hash,
              "{}: model_hash {} does not match the model ({}); this plan was made for another model", where,
              plan.model_hash, expected_hash);
  }
  if (j.contains("selector")) plan.selector = j["selector"];
  return plan;
}

HeadPlan HeadPlan::load(const std::string& path, const ModelConfig& config, const std::string& model_hash) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(read_text_file(path));
  } catch (const nlohmann::json::exception& e) {
    fail("{}: not valid JSON: {}", path, e.what());
  }
  return from_json(j, config, path, model_hash);
}

void HeadPlan::save(const std::string& path, const ModelConfig& config) const {
  write_text_atomic(path, to_json(config).dump(2) + "\n");
}

}  // namespace rad
