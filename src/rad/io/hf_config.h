// Hugging Face config.json <-> ModelConfig, for LlamaForCausalLM, MistralForCausalLM and
// Qwen2ForCausalLM. Anything else is refused with a message listing what is supported.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "rad/model/config.h"

namespace rad::io {

extern const char* const kSupportedArchitectures;  // for messages

// Validates and converts; `where` names the source (e.g. the file path) in error messages.
ModelConfig config_from_hf_json(const nlohmann::json& json, const std::string& where);
ModelConfig load_hf_config(const std::string& config_path);

// The HF config.json fields for `config` (merged over config.raw, so unknown fields survive).
nlohmann::json config_to_hf_json(const ModelConfig& config);

}  // namespace rad::io
