#include "rad/io/hf_config.h"

#include <cmath>

#include "rad/core/atomic_file.h"
#include "rad/core/error.h"

namespace rad::io {

const char* const kSupportedArchitectures = "LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM";

namespace {

using nlohmann::json;

bool has(const json& j, const char* key) { return j.contains(key) && !j.at(key).is_null(); }

int64_t get_int(const json& j, const char* key, const std::string& where, std::optional<int64_t> fallback,
                int64_t min_value = 1) {
  if (!has(j, key)) {
    RAD_CHECK(fallback.has_value(), "{}: missing required field \"{}\"", where, key);
    return *fallback;
  }
  const json& v = j.at(key);
  RAD_CHECK(v.is_number_integer() || (v.is_number_float() && std::floor(v.get<double>()) == v.get<double>()),
            "{}: field \"{}\" must be an integer, got {}", where, key, v.dump());
  // A float must fit int64 before the cast (out of range is undefined behaviour; found by fuzzing).
  RAD_CHECK(v.is_number_integer() || std::fabs(v.get<double>()) < 9.0e18, "{}: field \"{}\" is out of range, got {}",
            where, key, v.dump());
  int64_t value = v.is_number_integer() ? v.get<int64_t>() : static_cast<int64_t>(v.get<double>());
  RAD_CHECK(value >= min_value, "{}: field \"{}\" must be >= {}, got {}", where, key, min_value, value);
  return value;
}

double get_double(const json& j, const char* key, const std::string& where, double fallback) {
  if (!has(j, key)) return fallback;
  const json& v = j.at(key);
  RAD_CHECK(v.is_number(), "{}: field \"{}\" must be a number, got {}", where, key, v.dump());
  double value = v.get<double>();
  RAD_CHECK(std::isfinite(value) && value > 0, "{}: field \"{}\" must be a positive number, got {}", where, key,
            v.dump());
  return value;
}

bool get_bool(const json& j, const char* key, const std::string& where, bool fallback) {
  if (!has(j, key)) return fallback;
  RAD_CHECK(j.at(key).is_boolean(), "{}: field \"{}\" must be true or false, got {}", where, key, j.at(key).dump());
  return j.at(key).get<bool>();
}

RopeScaling parse_rope_scaling(const json& j, const std::string& where) {
  RopeScaling rs;
  if (!has(j, "rope_scaling")) return rs;
  const json& r = j.at("rope_scaling");
  RAD_CHECK(r.is_object(), "{}: field \"rope_scaling\" must be an object or null, got {}", where, r.dump());
  std::string type;
  if (has(r, "rope_type")) type = r.at("rope_type").is_string() ? r.at("rope_type").get<std::string>() : "";
  else if (has(r, "type")) type = r.at("type").is_string() ? r.at("type").get<std::string>() : "";
  RAD_CHECK(!type.empty(), "{}: rope_scaling needs a string \"rope_type\" (or \"type\"), got {}", where, r.dump());
  std::string w = where + ": rope_scaling";
  if (type == "default") return rs;
  if (type == "linear") {
    rs.type = type;
    rs.factor = get_double(r, "factor", w, -1);
    RAD_CHECK(rs.factor > 0, "{}: missing \"factor\"", w);
    return rs;
  }
  if (type == "llama3") {
    rs.type = type;
    rs.factor = get_double(r, "factor", w, -1);
    RAD_CHECK(rs.factor > 0, "{}: missing \"factor\"", w);
    rs.low_freq_factor = get_double(r, "low_freq_factor", w, -1);
    rs.high_freq_factor = get_double(r, "high_freq_factor", w, -1);
    RAD_CHECK(rs.low_freq_factor > 0 && rs.high_freq_factor > 0, "{}: llama3 needs low_freq_factor and high_freq_factor",
              w);
    RAD_CHECK(rs.high_freq_factor != rs.low_freq_factor, "{}: high_freq_factor must differ from low_freq_factor", w);
    rs.original_max_position_embeddings = get_int(r, "original_max_position_embeddings", w, std::nullopt);
    return rs;
  }
  fail("{}: rope_scaling type \"{}\" is not supported (supported: default, linear, llama3)", where, type);
}

}  // namespace

ModelConfig config_from_hf_json(const json& j, const std::string& where) {
  RAD_CHECK(j.is_object(), "{}: config must be a JSON object", where);
  ModelConfig c;
  c.raw = j;
  RAD_CHECK(has(j, "architectures") && j.at("architectures").is_array() && !j.at("architectures").empty() &&
                j.at("architectures")[0].is_string(),
            "{}: missing \"architectures\" (expected one of {})", where, kSupportedArchitectures);
  c.architecture = j.at("architectures")[0].get<std::string>();
  if (c.architecture == "LlamaForCausalLM") c.model_type = "llama";
  else if (c.architecture == "MistralForCausalLM") c.model_type = "mistral";
  else if (c.architecture == "Qwen2ForCausalLM") c.model_type = "qwen2";
  else fail("{}: architecture \"{}\" is not supported (supported: {})", where, c.architecture, kSupportedArchitectures);

  std::string act = has(j, "hidden_act") && j.at("hidden_act").is_string() ? j.at("hidden_act").get<std::string>() : "silu";
  RAD_CHECK(act == "silu", "{}: hidden_act \"{}\" is not supported (expected \"silu\")", where, act);

  c.n_vocab = get_int(j, "vocab_size", where, std::nullopt);
  c.d_model = get_int(j, "hidden_size", where, std::nullopt);
  c.n_layer = get_int(j, "num_hidden_layers", where, std::nullopt);
  c.n_head = get_int(j, "num_attention_heads", where, std::nullopt);
  c.n_head_kv = get_int(j, "num_key_value_heads", where, c.n_head);
  c.d_ff = get_int(j, "intermediate_size", where, std::nullopt);
  RAD_CHECK(c.n_head % c.n_head_kv == 0, "{}: num_attention_heads ({}) must be a multiple of num_key_value_heads ({})",
            where, c.n_head, c.n_head_kv);
  if (has(j, "head_dim")) {
    c.d_head = get_int(j, "head_dim", where, std::nullopt);
  } else {
    RAD_CHECK(c.d_model % c.n_head == 0, "{}: hidden_size ({}) must be a multiple of num_attention_heads ({})", where,
              c.d_model, c.n_head);
    c.d_head = c.d_model / c.n_head;
  }
  RAD_CHECK(c.d_head % 2 == 0, "{}: head dimension {} must be even for RoPE", where, c.d_head);
  c.max_position_embeddings = get_int(j, "max_position_embeddings", where, 2048);
  c.rms_norm_eps = get_double(j, "rms_norm_eps", where, 1e-6);
  c.rope_theta = get_double(j, "rope_theta", where, 10000.0);
  c.rope_scaling = parse_rope_scaling(j, where);
  c.tie_word_embeddings = get_bool(j, "tie_word_embeddings", where, false);
  if (c.model_type == "qwen2") {
    c.qkv_bias = true;
    c.o_bias = false;
    RAD_CHECK(!get_bool(j, "use_sliding_window", where, false),
              "{}: Qwen2 use_sliding_window=true is not supported", where);
  } else {
    c.qkv_bias = c.o_bias = get_bool(j, "attention_bias", where, false);
  }
  c.mlp_bias = get_bool(j, "mlp_bias", where, false);
  if (c.model_type == "mistral") c.sliding_window = has(j, "sliding_window") ? get_int(j, "sliding_window", where, std::nullopt) : (j.contains("sliding_window") ? 0 : 4096);
  if (has(j, "bos_token_id") && j.at("bos_token_id").is_number_integer()) c.bos_token_id = j.at("bos_token_id").get<int64_t>();
  if (has(j, "eos_token_id")) {
    const json& e = j.at("eos_token_id");
    if (e.is_number_integer()) c.eos_token_ids.push_back(e.get<int64_t>());
    else if (e.is_array())
      for (const auto& x : e)
        if (x.is_number_integer()) c.eos_token_ids.push_back(x.get<int64_t>());
  }
  if (has(j, "torch_dtype") && j.at("torch_dtype").is_string()) c.torch_dtype = j.at("torch_dtype").get<std::string>();
  return c;
}

ModelConfig load_hf_config(const std::string& config_path) {
  std::string text = read_text_file(config_path);
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    fail("{}: not valid JSON: {}", config_path, e.what());
  }
  return config_from_hf_json(j, config_path);
}

json config_to_hf_json(const ModelConfig& c) {
  json j = c.raw.is_object() ? c.raw : json::object();
  j["architectures"] = {c.architecture};
  j["model_type"] = c.model_type;
  j["vocab_size"] = c.n_vocab;
  j["hidden_size"] = c.d_model;
  j["num_hidden_layers"] = c.n_layer;
  j["num_attention_heads"] = c.n_head;
  j["num_key_value_heads"] = c.n_head_kv;
  j["intermediate_size"] = c.d_ff;
  j["hidden_act"] = "silu";
  if (c.d_head * c.n_head != c.d_model || j.contains("head_dim")) j["head_dim"] = c.d_head;
  j["max_position_embeddings"] = c.max_position_embeddings;
  j["rms_norm_eps"] = c.rms_norm_eps;
  j["rope_theta"] = c.rope_theta;
  if (c.rope_scaling.type == "default") {
    j["rope_scaling"] = nullptr;
  } else {
    json r = {{"rope_type", c.rope_scaling.type}, {"factor", c.rope_scaling.factor}};
    if (c.rope_scaling.type == "llama3") {
      r["low_freq_factor"] = c.rope_scaling.low_freq_factor;
      r["high_freq_factor"] = c.rope_scaling.high_freq_factor;
      r["original_max_position_embeddings"] = c.rope_scaling.original_max_position_embeddings;
    }
    j["rope_scaling"] = r;
  }
  j["tie_word_embeddings"] = c.tie_word_embeddings;
  if (c.model_type != "qwen2") j["attention_bias"] = c.qkv_bias;
  if (c.mlp_bias || j.contains("mlp_bias")) j["mlp_bias"] = c.mlp_bias;
  if (c.model_type == "mistral") j["sliding_window"] = c.sliding_window > 0 ? json(c.sliding_window) : json(nullptr);
  if (c.bos_token_id) j["bos_token_id"] = *c.bos_token_id;
  if (c.eos_token_ids.size() == 1) j["eos_token_id"] = c.eos_token_ids[0];
  else if (!c.eos_token_ids.empty()) j["eos_token_id"] = c.eos_token_ids;
  j["torch_dtype"] = c.torch_dtype;
  return j;
}

}  // namespace rad::io
