// Hybrid checkpoint directories: config.json (rad/model/hybrid_config.h) + model.safetensors with
// the keys of rad/model/hybrid_mixer.h. io::load_causal_lm dispatches here when config.json's
// model_type is "radistill_hybrid", so every command that loads a model also loads hybrids.
#pragma once

#include <string>

#include "rad/model/causal_lm.h"
#include "rad/model/hybrid_config.h"

namespace rad::io {

struct HybridModel {
  CausalLM model{nullptr};
  HybridConfig config;
};

// True when MODEL_DIR/config.json declares the hybrid model_type.
bool is_hybrid_dir(const std::string& model_dir);
HybridModel load_hybrid(const std::string& model_dir, at::ScalarType dtype = at::kFloat);
void save_hybrid(CausalLM& model, const HybridConfig& config, const std::string& model_dir);

// Copies tokenizer.json, tokenizer_config.json, special_tokens_map.json and generation_config.json
// from `from_dir` to `to_dir` where present.
void copy_tokenizer_files(const std::string& from_dir, const std::string& to_dir);

}  // namespace rad::io
