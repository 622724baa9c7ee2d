// Hugging Face model directories: config.json + model.safetensors, or sharded
// model-XXXXX-of-YYYYY.safetensors + model.safetensors.index.json.
#pragma once

#include <ATen/ATen.h>
#include <torch/nn/module.h>

#include <map>
#include <set>
#include <string>

#include "rad/model/causal_lm.h"

namespace rad::io {

// Tensors of a model directory by name (memory-mapped; they keep their files mapped).
// Validates the index file when sharded: shard names stay inside the directory, every mapped
// tensor is in its shard.
std::map<std::string, at::Tensor> read_model_tensors(const std::string& model_dir);

// Copies `tensors` into the module's parameters (converting dtype). Strict: missing, unexpected
// and mis-shaped tensors are all listed by name in one error. Names in `ignore` are skipped.
void load_parameters_strict(torch::nn::Module& module, const std::map<std::string, at::Tensor>& tensors,
                            const std::string& where, const std::set<std::string>& ignore = {});

// Loads a teacher model from an HF directory, computing in `dtype` (kFloat or kBFloat16). A hybrid
// directory (model_type "radistill_hybrid") loads as the hybrid (rad/io/hybrid_checkpoint.h).
CausalLM load_causal_lm(const std::string& model_dir, at::ScalarType dtype = at::kFloat);

// Writes config.json and model.safetensors (parameters in their current dtype), atomically.
void save_causal_lm(CausalLM& model, const std::string& model_dir);

// "float32" / "bfloat16" / "float16" <-> ScalarType.
at::ScalarType parse_dtype(const std::string& name);
std::string dtype_name(at::ScalarType type);

}  // namespace rad::io
