#include "rad/io/checkpoint.h"

#include <filesystem>
#include <nlohmann/json.hpp>

#include "rad/core/atomic_file.h"
#include "rad/core/error.h"
#include "rad/core/log.h"
#include "rad/io/hf_config.h"
#include "rad/io/hybrid_checkpoint.h"
#include "rad/io/safetensors.h"
#include "rad/io/shard_index.h"

namespace rad::io {
namespace fs = std::filesystem;
using nlohmann::json;

at::ScalarType parse_dtype(const std::string& name) {
  if (name == "float32" || name == "f32" || name == "fp32") return at::kFloat;
  if (name == "bfloat16" || name == "bf16") return at::kBFloat16;
  if (name == "float16" || name == "f16" || name == "fp16") return at::kHalf;
  fail("unknown dtype \"{}\" (expected float32 or bfloat16)", name);
}

std::string dtype_name(at::ScalarType type) {
  switch (type) {
    case at::kFloat: return "float32";
    case at::kBFloat16: return "bfloat16";
    case at::kHalf: return "float16";
    default: return c10::toString(type);
  }
}

namespace {

void add_file_tensors(const std::string& path, std::map<std::string, at::Tensor>* out,
                      const std::set<std::string>* only = nullptr) {
  auto file = SafetensorsFile::open(path);
  for (const auto& e : file->entries()) {
    if (only != nullptr && only->count(e.name) == 0) continue;
    RAD_CHECK(out->count(e.name) == 0, "{}: tensor \"{}\" appears in more than one file", path, e.name);
    (*out)[e.name] = file->tensor(e.name);
  }
}

}  // namespace

std::map<std::string, at::Tensor> read_model_tensors(const std::string& model_dir) {
  std::map<std::string, at::Tensor> tensors;
  ShardIndex index = read_shard_index(model_dir);
  if (!index.single_file.empty()) {
    add_file_tensors(index.single_file, &tensors);
    return tensors;
  }
  for (const auto& [shard, names] : index.shards) {
    add_file_tensors(shard, &tensors, &names);
    for (const auto& name : names)
      RAD_CHECK(tensors.count(name), "{}: tensor \"{}\" is mapped to {} but that file does not contain it",
                index.index_path, name, fs::path(shard).filename().string());
  }
  return tensors;
}

void load_parameters_strict(torch::nn::Module& module, const std::map<std::string, at::Tensor>& tensors,
                            const std::string& where, const std::set<std::string>& ignore) {
  auto params = module.named_parameters(/*recurse=*/true);
  std::vector<std::string> missing, unexpected, mis_shaped;
  for (const auto& item : params) {
    auto it = tensors.find(item.key());
    if (it == tensors.end()) {
      missing.push_back(item.key());
    } else if (it->second.sizes() != item.value().sizes()) {
      mis_shaped.push_back(fmt::format("{} (file {}, model {})", item.key(), c10::str(it->second.sizes()),
                                       c10::str(item.value().sizes())));
    }
  }
  for (const auto& [name, t] : tensors)
    if (params.find(name) == nullptr && ignore.count(name) == 0) unexpected.push_back(name);
  if (!missing.empty() || !unexpected.empty() || !mis_shaped.empty()) {
    auto list = [](const std::vector<std::string>& v) {
      std::string s;
      for (size_t i = 0; i < v.size() && i < 20; ++i) s += (i ? ", " : "") + v[i];
      if (v.size() > 20) s += fmt::format(", ... ({} in all)", v.size());
      return s;
    };
    std::string msg = where + ": checkpoint does not match the model:";
    if (!missing.empty()) msg += "\n  missing tensors: " + list(missing);
    if (!unexpected.empty()) msg += "\n  unexpected tensors: " + list(unexpected);
    if (!mis_shaped.empty()) msg += "\n  wrong shapes: " + list(mis_shaped);
    throw Error(msg);
  }
  at::NoGradGuard no_grad;
  for (auto& item : params) {
    const at::Tensor& src = tensors.at(item.key());
    RAD_CHECK(at::isFloatingType(src.scalar_type()), "{}: tensor \"{}\" has non-float dtype {}", where, item.key(),
              c10::toString(src.scalar_type()));
    item.value().copy_(src);
  }
}

CausalLM load_causal_lm(const std::string& model_dir, at::ScalarType dtype) {
  if (is_hybrid_dir(model_dir)) return load_hybrid(model_dir, dtype).model;  // model_type "radistill_hybrid"
  ModelConfig config = load_hf_config((fs::path(model_dir) / "config.json").string());
  CausalLM model(config);
  model->to(dtype);
  auto tensors = read_model_tensors(model_dir);
  std::set<std::string> ignore;
  // Older checkpoints store RoPE buffers; HF ignores them too.
  for (const auto& [name, t] : tensors)
    if (name.find("rotary_emb.inv_freq") != std::string::npos) ignore.insert(name);
  // Tied models sometimes also store lm_head.weight (a copy of the embeddings).
  if (config.tie_word_embeddings && tensors.count("lm_head.weight")) ignore.insert("lm_head.weight");
  load_parameters_strict(*model, tensors, model_dir, ignore);
  model->eval();
  return model;
}

void save_causal_lm(CausalLM& model, const std::string& model_dir) {
  ensure_directory(model_dir);
  ModelConfig config = model->config();
  config.torch_dtype = dtype_name(model->dtype());
  std::vector<std::pair<std::string, at::Tensor>> tensors;
  for (const auto& item : model->named_parameters()) tensors.emplace_back(item.key(), item.value());
  save_safetensors((fs::path(model_dir) / "model.safetensors").string(), tensors);
  write_text_atomic((fs::path(model_dir) / "config.json").string(), config_to_hf_json(config).dump(2) + "\n");
}

}  // namespace rad::io
