#include "rad/model/hybrid_config.h"

#include <algorithm>

#include "rad/core/error.h"
#include "rad/io/hf_config.h"

namespace rad {
using nlohmann::json;

void HybridConfig::validate(const std::string& where) const {
  RAD_CHECK(ssm.d_state >= 1, "{}: ssm.d_state must be >= 1, got {}", where, ssm.d_state);
  RAD_CHECK(!ssm.conv || ssm.conv_width >= 1, "{}: ssm.conv_width must be >= 1, got {}", where, ssm.conv_width);
  RAD_CHECK(ssm.chunk_size >= 1, "{}: ssm.chunk_size must be >= 1, got {}", where, ssm.chunk_size);
}

json HybridConfig::to_json() const {
  json j = io::config_to_hf_json(base);
  j["teacher_architecture"] = base.architecture;
  j["teacher_model_type"] = base.model_type;
  j["architectures"] = {kHybridArchitecture};
  j["model_type"] = kHybridModelType;
  // transformers: AutoModelForCausalLM.from_pretrained(dir, trust_remote_code=True) (rad/io/hf_modeling.h)
  j["auto_map"] = {{"AutoConfig", "modeling_radistill.RadistillHybridConfig"},
                   {"AutoModelForCausalLM", "modeling_radistill.RadistillHybridForCausalLM"}};
  j["head_plan"] = plan.to_json(base);
  j["ssm"] = {{"d_state", ssm.d_state}, {"conv", ssm.conv},     {"conv_width", ssm.conv_width},
              {"gate", ssm.gate},       {"bias", ssm.bias},     {"input_step", ssm.input_step},
              {"chunk_size", ssm.chunk_size}, {"init", ssm.init}};
  return j;
}

bool HybridConfig::is_hybrid_json(const json& j) {
  return j.is_object() && j.contains("model_type") && j["model_type"] == kHybridModelType;
}

HybridConfig HybridConfig::from_json(const json& j, const std::string& where) {
  RAD_CHECK(is_hybrid_json(j), "{}: not a hybrid config (model_type is not \"{}\")", where, kHybridModelType);
  for (const char* key : {"teacher_architecture", "teacher_model_type", "head_plan", "ssm"})
    RAD_CHECK(j.contains(key), "{}: hybrid config lacks the field \"{}\"", where, key);
  json teacher = j;
  teacher["architectures"] = {j["teacher_architecture"]};
  teacher["model_type"] = j["teacher_model_type"];
  for (const char* key : {"teacher_architecture", "teacher_model_type", "head_plan", "ssm"}) teacher.erase(key);
  HybridConfig h;
  h.base = io::config_from_hf_json(teacher, where);
  h.plan = HeadPlan::from_json(j["head_plan"], h.base, where + " (head_plan)");
  const json& s = j["ssm"];
  RAD_CHECK(s.is_object(), "{}: \"ssm\" must be an object", where);
  auto get_int = [&](const char* k, int64_t def) {
    if (!s.contains(k)) return def;
    RAD_CHECK(s[k].is_number_integer(), "{}: ssm.{} must be an integer", where, k);
    return s[k].get<int64_t>();
  };
  auto get_bool = [&](const char* k, bool def) {
    if (!s.contains(k)) return def;
    RAD_CHECK(s[k].is_boolean(), "{}: ssm.{} must be true or false", where, k);
    return s[k].get<bool>();
  };
  RAD_CHECK(s.contains("d_state"), "{}: ssm.d_state is missing", where);
  h.ssm.d_state = get_int("d_state", 0);
  h.ssm.conv = get_bool("conv", false);
  h.ssm.conv_width = get_int("conv_width", 4);
  h.ssm.gate = get_bool("gate", false);
  h.ssm.bias = get_bool("bias", false);
  h.ssm.input_step = get_bool("input_step", false);  // absent in hybrids written before the option
  h.ssm.chunk_size = get_int("chunk_size", 64);
  if (s.contains("init") && s["init"].is_string()) h.ssm.init = s["init"].get<std::string>();
  h.validate(where);
  return h;
}

int64_t HybridConfig::kv_bytes_per_token(int64_t dtype_bytes) const {
  int64_t groups = 0;
  for (int64_t l = 0; l < base.n_layer; ++l) groups += static_cast<int64_t>(plan.kv_groups(l, base).size());
  return groups * 2 * base.d_head * dtype_bytes;
}

int64_t HybridConfig::ssm_state_bytes(int64_t dtype_bytes) const {
  const int64_t hs = n_ssm_heads(), P = base.d_head, N = ssm.d_state;
  int64_t bytes = hs * P * N * dtype_bytes;
  if (ssm.conv) bytes += hs * (P + 2 * N) * (ssm.conv_width - 1) * dtype_bytes;
  return bytes;
}

SsmOptions recommended_ssm_options() {
  SsmOptions o;
  o.conv = true;
  return o;
}

int64_t resolve_d_state(const ModelConfig& teacher, int64_t requested) {
  return requested > 0 ? requested : teacher.d_head;
}

int64_t shrunk_d_state(int64_t d_state, int64_t factor) {
  RAD_CHECK(factor >= 1, "shrink factor must be >= 1, got {}", factor);
  return std::max<int64_t>(1, d_state / factor);
}

}  // namespace rad
