#include "rad/io/hybrid_checkpoint.h"

#include <filesystem>
#include <nlohmann/json.hpp>

#include "rad/core/atomic_file.h"
#include "rad/core/error.h"
#include "rad/io/checkpoint.h"
#include "rad/io/hf_modeling.h"
#include "rad/io/safetensors.h"
#include "rad/model/hybrid_mixer.h"

namespace rad::io {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {
json read_json(const std::string& path) {
  try {
    return json::parse(read_text_file(path));
  } catch (const json::exception& e) {
    fail("{}: not valid JSON: {}", path, e.what());
  }
}
}  // namespace

bool is_hybrid_dir(const std::string& model_dir) {
  fs::path p = fs::path(model_dir) / "config.json";
  if (!fs::exists(p)) return false;
  return HybridConfig::is_hybrid_json(read_json(p.string()));
}

HybridModel load_hybrid(const std::string& model_dir, at::ScalarType dtype) {
  std::string path = (fs::path(model_dir) / "config.json").string();
  HybridModel out;
  out.config = HybridConfig::from_json(read_json(path), path);
  out.model = make_hybrid_lm(out.config);
  out.model->to(dtype);
  auto tensors = read_model_tensors(model_dir);
  std::set<std::string> ignore;
  if (out.config.base.tie_word_embeddings && tensors.count("lm_head.weight")) ignore.insert("lm_head.weight");
  load_parameters_strict(*out.model, tensors,
                         model_dir + " (hybrid: the head plan and ssm options in config.json must match the tensors)",
                         ignore);
  out.model->eval();
  return out;
}

void save_hybrid(CausalLM& model, const HybridConfig& config, const std::string& model_dir) {
  ensure_directory(model_dir);
  HybridConfig c = config;
  c.base.torch_dtype = dtype_name(model->dtype());
  std::vector<std::pair<std::string, at::Tensor>> tensors;
  for (const auto& item : model->named_parameters()) tensors.emplace_back(item.key(), item.value());
  save_safetensors((fs::path(model_dir) / "model.safetensors").string(), tensors);
  write_text_atomic((fs::path(model_dir) / "config.json").string(), c.to_json().dump(2) + "\n");
  write_hf_modeling_file(model_dir);  // what config.json's auto_map names, for transformers
}

void copy_tokenizer_files(const std::string& from_dir, const std::string& to_dir) {
  for (const char* name : {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json"}) {
    fs::path src = fs::path(from_dir) / name;
    if (fs::exists(src)) write_text_atomic((fs::path(to_dir) / name).string(), read_text_file(src.string()));
  }
}

}  // namespace rad::io
