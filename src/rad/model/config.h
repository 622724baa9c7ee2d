// The Llama-family model configuration, in the project's size vocabulary
// (n_vocab, n_layer, n_head, n_head_kv, d_model, d_head, d_ff). Parsed from and written to Hugging
// Face `config.json` by rad/io/hf_config.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace rad {

struct RopeScaling {
  std::string type = "default";  // "default" | "linear" | "llama3"
  double factor = 1.0;
  double low_freq_factor = 1.0;                   // llama3
  double high_freq_factor = 4.0;                  // llama3
  int64_t original_max_position_embeddings = 0;   // llama3
};

struct ModelConfig {
  std::string architecture = "LlamaForCausalLM";
  std::string model_type = "llama";
  int64_t n_vocab = 0;
  int64_t d_model = 0;
  int64_t n_layer = 0;
  int64_t n_head = 0;
  int64_t n_head_kv = 0;
  int64_t d_head = 0;
  int64_t d_ff = 0;
  int64_t max_position_embeddings = 2048;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  bool tie_word_embeddings = false;
  bool qkv_bias = false;  // Qwen2: always; Llama: attention_bias
  bool o_bias = false;    // Llama attention_bias also biases o_proj
  bool mlp_bias = false;
  int64_t sliding_window = 0;  // 0: full causal attention
  std::optional<int64_t> bos_token_id;
  std::vector<int64_t> eos_token_ids;
  std::string torch_dtype = "float32";
  // The config.json this came from, kept so that saving preserves fields we do not interpret.
  nlohmann::json raw = nlohmann::json::object();

  int64_t n_group() const { return n_head / n_head_kv; }  // query heads per KV head
  int64_t n_query_heads_total() const { return n_layer * n_head; }
  // KV-cache bytes per token for the whole model at `dtype_bytes` per element.
  int64_t kv_cache_bytes_per_token(int64_t dtype_bytes) const { return n_layer * n_head_kv * 2 * d_head * dtype_bytes; }
};

}  // namespace rad
