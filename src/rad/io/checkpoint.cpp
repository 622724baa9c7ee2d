#include "rad/io/checkpoint.h"

#include <dlfcn.h>
#include <malloc.h>

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
                            const std::string& where, const std::set<std::string>& ignore, bool share) {
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
    if (share && src.scalar_type() == item.value().scalar_type() && src.device() == item.value().device() &&
        src.is_contiguous())
      item.value().set_data(src);  // the parameter's old (initial) storage is freed here
    else
      item.value().copy_(src);
  }
}

namespace {

// Modules built in this scope allocate their parameters in `type` (libtorch's modules take the
// default dtype and initialise randomly; the values are overwritten by the checkpoint right after).
// The default dtype is process-wide: loads must not run beside threads that create tensors without
// a dtype (none do today; the server's runtime does not use libtorch).
class DefaultDtypeGuard {
 public:
  explicit DefaultDtypeGuard(at::ScalarType type) : saved_(c10::get_default_dtype()) {
    c10::set_default_dtype(c10::scalarTypeToTypeMeta(type));
  }
  ~DefaultDtypeGuard() { c10::set_default_dtype(saved_); }
  DefaultDtypeGuard(const DefaultDtypeGuard&) = delete;
  DefaultDtypeGuard& operator=(const DefaultDtypeGuard&) = delete;

 private:
  caffe2::TypeMeta saved_;
};

// Hands memory the allocator holds free back to the system (the randomly initialised parameters a
// load replaced), so it does not stay resident beside the mapped weights. tcmalloc (linked into
// the binaries, docs/DESIGN.md section 9) keeps freed spans otherwise; under glibc malloc, malloc_trim.
void release_free_memory() {
  using ReleaseFn = void (*)();
  static ReleaseFn tcmalloc_release =
      reinterpret_cast<ReleaseFn>(dlsym(RTLD_DEFAULT, "MallocExtension_ReleaseFreeMemory"));
  if (tcmalloc_release != nullptr)
    tcmalloc_release();
  else
    malloc_trim(0);
}

}  // namespace

at::ScalarType stored_dtype(const std::string& model_dir) {
  const std::string name = "model.embed_tokens.weight";
  ShardIndex index = read_shard_index(model_dir);
  std::string file = index.single_file;
  for (const auto& [shard, names] : index.shards)
    if (names.count(name)) file = shard;
  RAD_CHECK(!file.empty(), "{}: no shard holds {} (needed to tell the stored dtype; pass float32 or bfloat16 "
            "instead of auto)", model_dir, name);
  auto st = SafetensorsFile::open(file);
  RAD_CHECK(st->contains(name), "{}: no tensor {} (needed to tell the stored dtype; pass float32 or bfloat16 instead "
            "of auto)", file, name);
  at::ScalarType type = safetensors_dtype_to_scalar(st->entry(name).dtype, file);
  RAD_CHECK(at::isFloatingType(type), "{}: {} is stored as {}, not a float type", file, name, st->entry(name).dtype);
  return type;
}

at::ScalarType resolve_weights_dtype(const std::string& name, const std::string& model_dir) {
  if (name == "auto") return stored_dtype(model_dir);
  RAD_CHECK(name == "float32" || name == "bfloat16" || name == "float16",
            "unknown weights dtype \"{}\" for {} (expected auto, float32, bfloat16 or float16)", name, model_dir);
  return parse_dtype(name);
}

CausalLM load_causal_lm(const std::string& model_dir, at::ScalarType dtype) {
  if (is_hybrid_dir(model_dir)) return load_hybrid(model_dir, dtype).model;  // model_type "radistill_hybrid"
  ModelConfig config = load_hf_config((fs::path(model_dir) / "config.json").string());
  RAD_CHECK(dtype == at::kFloat || dtype == at::kBFloat16 || dtype == at::kHalf,
            "{}: cannot hold a model's weights in {} (float32, bfloat16 or float16)", model_dir, c10::toString(dtype));
  CausalLM model = [&] {
    DefaultDtypeGuard guard(dtype);
    return CausalLM(config);
  }();
  auto tensors = read_model_tensors(model_dir);
  std::set<std::string> ignore;
  // Older checkpoints store RoPE buffers; HF ignores them too.
  for (const auto& [name, t] : tensors)
    if (name.find("rotary_emb.inv_freq") != std::string::npos) ignore.insert(name);
  // Tied models sometimes also store lm_head.weight (a copy of the embeddings).
  if (config.tie_word_embeddings && tensors.count("lm_head.weight")) ignore.insert("lm_head.weight");
  load_parameters_strict(*model, tensors, model_dir, ignore, /*share=*/true);
  tensors.clear();  // the parameters hold what they use; unused mappings (e.g. a tied model's lm_head) go
  release_free_memory();
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
