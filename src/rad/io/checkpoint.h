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
// With `share`, a parameter whose dtype and device match its tensor takes that tensor itself
// instead of a copy (memory-mapped file tensors stay mapped: no second copy of the weights).
void load_parameters_strict(torch::nn::Module& module, const std::map<std::string, at::Tensor>& tensors,
                            const std::string& where, const std::set<std::string>& ignore = {},
                            bool share = false);

// Loads a model from an HF directory with its parameters in `dtype` (kFloat, kBFloat16 or kHalf).
// Where the file stores a tensor in `dtype` the parameter is the memory-mapped file tensor itself,
// not a copy (private copy-on-write mapping: training it in place never changes the file); other
// tensors are converted. The model is built with `dtype` as the default dtype, so its short-lived
// random initialisation takes dtype's size, not float32's. A hybrid directory (model_type
// "radistill_hybrid") loads as the hybrid (rad/io/hybrid_checkpoint.h), copied.
CausalLM load_causal_lm(const std::string& model_dir, at::ScalarType dtype = at::kFloat);

// The dtype a model directory stores its weights in: that of model.embed_tokens.weight (read from
// the safetensors header). Throws naming the directory when it has no such tensor or a non-float one.
at::ScalarType stored_dtype(const std::string& model_dir);
// A --*-dtype option's value: "auto" (the stored dtype) or a name parse_dtype accepts.
at::ScalarType resolve_weights_dtype(const std::string& name, const std::string& model_dir);

// Writes config.json and model.safetensors (parameters in their current dtype), atomically.
void save_causal_lm(CausalLM& model, const std::string& model_dir);

// "float32" / "bfloat16" / "float16" <-> ScalarType.
at::ScalarType parse_dtype(const std::string& name);
std::string dtype_name(at::ScalarType type);

}  // namespace rad::io
