#include "rad/io/gguf_llama.h"

#include <fmt/ranges.h>

#include <filesystem>
#include <map>
#include <regex>
#include <set>

#include "rad/core/atomic_file.h"
#include "rad/core/error.h"
#include "rad/core/log.h"
#include "rad/core/progress.h"
#include "rad/io/checkpoint.h"
#include "rad/io/gguf_dequant.h"
#include "rad/io/gguf_quantize.h"
#include "rad/io/hf_config.h"
#include "rad/io/hybrid_checkpoint.h"
#include "rad/io/safetensors.h"
#include "rad/model/hybrid_config.h"
#include "rad/tokenizer/tokenizer.h"

namespace rad::io {

using nlohmann::json;

namespace {

std::string dtype_torch_name(at::ScalarType t) {
  return t == at::kBFloat16 ? "bfloat16" : t == at::kHalf ? "float16" : "float32";
}

}  // namespace

at::Tensor rope_rows_hf_to_gguf(const at::Tensor& w, int64_t n_head) {
  auto sizes = w.sizes().vec();
  RAD_CHECK(sizes[0] % (2 * n_head) == 0, "RoPE row permutation: {} rows are not {} heads of even size", sizes[0], n_head);
  std::vector<int64_t> s = {n_head, 2, sizes[0] / n_head / 2};
  s.insert(s.end(), sizes.begin() + 1, sizes.end());
  // [head, half, i, ...] -> [head, i, half, ...]: row h*(d/2)+i moves to 2*i+h.
  return w.reshape(s).transpose(1, 2).reshape(sizes).contiguous();
}

at::Tensor rope_rows_gguf_to_hf(const at::Tensor& w, int64_t n_head) {
  auto sizes = w.sizes().vec();
  RAD_CHECK(sizes[0] % (2 * n_head) == 0, "RoPE row permutation: {} rows are not {} heads of even size", sizes[0], n_head);
  std::vector<int64_t> s = {n_head, sizes[0] / n_head / 2, 2};
  s.insert(s.end(), sizes.begin() + 1, sizes.end());
  return w.reshape(s).transpose(1, 2).reshape(sizes).contiguous();
}

// ---------------------------------------------------------------------------------------------------
// Import

std::vector<std::pair<std::string, at::Tensor>> tensors_from_gguf(const GgufFile& f, const ModelConfig& c,
                                                                 at::ScalarType dtype) {
  // Expected HF shapes, from the configuration.
  const int64_t D = c.d_model, V = c.n_vocab, F = c.d_ff, Q = c.n_head * c.d_head, K = c.n_head_kv * c.d_head;
  std::map<std::string, std::vector<int64_t>> expected = {{"model.embed_tokens.weight", {V, D}},
                                                          {"model.norm.weight", {D}}};
  if (!c.tie_word_embeddings) expected["lm_head.weight"] = {V, D};
  for (int64_t l = 0; l < c.n_layer; ++l) {
    std::string p = fmt::format("model.layers.{}.", l);
    expected[p + "input_layernorm.weight"] = {D};
    expected[p + "post_attention_layernorm.weight"] = {D};
    expected[p + "self_attn.q_proj.weight"] = {Q, D};
    expected[p + "self_attn.k_proj.weight"] = {K, D};
    expected[p + "self_attn.v_proj.weight"] = {K, D};
    expected[p + "self_attn.o_proj.weight"] = {D, Q};
    expected[p + "mlp.gate_proj.weight"] = {F, D};
    expected[p + "mlp.up_proj.weight"] = {F, D};
    expected[p + "mlp.down_proj.weight"] = {D, F};
    if (c.qkv_bias) {
      expected[p + "self_attn.q_proj.bias"] = {Q};
      expected[p + "self_attn.k_proj.bias"] = {K};
      expected[p + "self_attn.v_proj.bias"] = {K};
    }
    if (c.o_bias) expected[p + "self_attn.o_proj.bias"] = {D};
    if (c.mlp_bias) {
      expected[p + "mlp.gate_proj.bias"] = {F};
      expected[p + "mlp.up_proj.bias"] = {F};
      expected[p + "mlp.down_proj.bias"] = {D};
    }
  }
  // Name and shape of every tensor before any memory is spent on dequantising.
  std::vector<std::pair<const GgufTensorInfo*, std::string>> todo;
  std::set<std::string> seen;
  for (const auto& t : f.tensors()) {
    std::string hf = gguf_to_hf_name(t.name);
    RAD_CHECK(!hf.empty(), "{}: tensor \"{}\" is not part of the llama architecture we import", f.path(), t.name);
    auto it = expected.find(hf);
    RAD_CHECK(it != expected.end(), "{}: unexpected tensor \"{}\" ({}) for this configuration", f.path(), t.name, hf);
    RAD_CHECK(t.shape() == it->second, "{}: tensor \"{}\" has shape [{}], expected [{}]", f.path(), t.name,
              fmt::join(t.shape(), ", "), fmt::join(it->second, ", "));
    RAD_CHECK(ggml_can_dequantize(t.type), "{}: tensor \"{}\" is {}, which import-gguf cannot dequantize (supported: "
              "F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q4_K, Q6_K)", f.path(), t.name, ggml_type_name(static_cast<uint32_t>(t.type)));
    todo.emplace_back(&t, hf);
    seen.insert(hf);
  }
  std::vector<std::string> missing;
  for (const auto& [name, shape] : expected)
    if (!seen.count(name)) missing.push_back(name);
  RAD_CHECK(missing.empty(), "{}: missing tensors for this configuration: {}", f.path(), fmt::join(missing, ", "));

  uint64_t total = 0;
  for (const auto& [t, hf] : todo) total += t->n_elems;
  Progress progress("dequantize", static_cast<int64_t>(total), "values");
  uint64_t done = 0;
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (const auto& [t, hf] : todo) {
    at::Tensor w = at::empty(t->shape(), at::kFloat);
    dequantize(t->type, f.tensor_data(*t), t->n_elems, w.data_ptr<float>());
    if (hf.find("self_attn.q_proj") != std::string::npos) w = rope_rows_gguf_to_hf(w, c.n_head);
    if (hf.find("self_attn.k_proj") != std::string::npos) w = rope_rows_gguf_to_hf(w, c.n_head_kv);
    at::Tensor stored = w.to(dtype).contiguous();
    // float16 tops out at 65504: a larger weight would silently become inf.
    RAD_CHECK(dtype != at::kHalf || at::isfinite(stored).all().item<bool>() || !at::isfinite(w).all().item<bool>(),
              "{}: tensor {} has values beyond float16's range (|x| > 65504); import it as bfloat16 or float32",
              f.path(), hf);
    out.emplace_back(hf, std::move(stored));
    done += t->n_elems;
    progress.update(static_cast<int64_t>(done));
  }
  progress.finish();
  return out;
}

void import_gguf(const std::string& gguf_path, const std::string& out_dir, at::ScalarType dtype) {
  RAD_CHECK(dtype == at::kFloat || dtype == at::kBFloat16 || dtype == at::kHalf,
            "import-gguf: dtype must be float32, bfloat16 or float16");
  auto file = GgufFile::open(gguf_path);
  ModelConfig config = config_from_gguf(*file);
  config.torch_dtype = dtype_torch_name(dtype);
  auto [tok, tok_config] = tokenizer_from_gguf(*file);
  Tokenizer::from_json(tok, tok_config);  // validates what we are about to write
  auto tensors = tensors_from_gguf(*file, config, dtype);

  ensure_directory(out_dir);
  namespace fs = std::filesystem;
  auto path = [&](const char* name) { return (fs::path(out_dir) / name).string(); };
  write_text_atomic(path("tokenizer.json"), tok.dump());
  write_text_atomic(path("tokenizer_config.json"), tok_config.dump(2) + "\n");
  std::set<std::string> types;
  for (const auto& t : file->tensors()) types.insert(ggml_type_name(static_cast<uint32_t>(t.type)));
  std::string type_list = fmt::format("{}", fmt::join(types, ", "));
  save_safetensors(path("model.safetensors"), tensors,
                   {{"format", "pt"}, {"source", fs::path(gguf_path).filename().string()}});
  std::string name = file->opt_string("general.name").value_or(fs::path(gguf_path).stem().string());
  std::string card = fmt::format(
      "# {}\n\nImported from `{}` by `radistill import-gguf` (GGUF v{}, tensor types {}), stored as {}.\n\n"
      "- Quantised tensors are dequantised exactly as the format defines; the weights are those llama.cpp computes with, "
      "not the original unquantised checkpoint's.\n"
      "- q_proj / k_proj rows are put back in Hugging Face's rotate-half RoPE order.\n"
      "- tokenizer.json and tokenizer_config.json are rebuilt from the GGUF tokenizer metadata "
      "(tokenizer.ggml.pre = \"{}\").\n",
      name, fs::path(gguf_path).filename().string(), file->version(), type_list, config.torch_dtype,
      file->opt_string("tokenizer.ggml.pre").value_or("gpt-2"));
  if (auto license = file->opt_string("general.license")) card += fmt::format("- License (from the file): {}.\n", *license);
  write_text_atomic(path("README.md"), card);
  write_text_atomic(path("config.json"), config_to_hf_json(config).dump(2) + "\n");  // last: the directory is complete
  log_info("wrote {}: {} layers, d_model {}, {} heads ({} KV), vocab {}, {}", out_dir, config.n_layer, config.d_model,
           config.n_head, config.n_head_kv, config.n_vocab, config.torch_dtype);
}

// ---------------------------------------------------------------------------------------------------
// Export

namespace {

// The block type a matrix with rows of `cols` values is written in: `type`, or where the rows are not
// whole blocks of it, what llama-quantize falls back to (Q4_K -> Q5_0, Q6_K -> Q8_0: 32-value blocks
// where rows are not whole 256-value super-blocks, as SmolLM2's 576); none (F16) when even that fails.
std::optional<GgmlType> block_type_for(GgmlType type, int64_t cols) {
  if (cols % static_cast<int64_t>(ggml_type_info(static_cast<uint32_t>(type))->block_elems) == 0) return type;
  if (cols % 32 != 0) return std::nullopt;
  if (type == GgmlType::kQ4_K) return GgmlType::kQ5_0;
  if (type == GgmlType::kQ6_K) return GgmlType::kQ8_0;
  return std::nullopt;
}

}  // namespace

void export_gguf(const std::string& model_dir, const std::string& out_path, GgmlType type, bool allow_hybrid) {
  const bool quantized = ggml_can_quantize(type);
  RAD_CHECK(type == GgmlType::kF32 || type == GgmlType::kF16 || type == GgmlType::kBF16 || quantized,
            "export-gguf: the tensor type must be F32, F16, BF16, Q8_0, Q4_0, Q5_0, Q4_K or Q6_K");
  const bool hybrid = is_hybrid_dir(model_dir);
  RAD_CHECK(!hybrid || allow_hybrid, "{}: is a hybrid; llama.cpp has no architecture for per-head hybrids, export-gguf "
            "writes teachers only (`radistill quantize` writes hybrids for radistill's runtime)", model_dir);
  namespace fs = std::filesystem;
  const std::string config_path = (fs::path(model_dir) / "config.json").string();
  std::string hybrid_config_text;
  ModelConfig c;
  if (hybrid) {
    hybrid_config_text = read_text_file(config_path);
    json j;
    try {
      j = json::parse(hybrid_config_text);
    } catch (const json::exception& e) {
      fail("{}: invalid JSON: {}", config_path, e.what());
    }
    c = HybridConfig::from_json(j, config_path).base;
  } else {
    c = load_hf_config(config_path);
    // A hybrid is run by radistill's runtime from its own config.json; a teacher by llama.cpp's llama graph.
    RAD_CHECK(c.model_type == "llama" || (c.model_type == "mistral" && c.sliding_window == 0),
              "{}: {} cannot be written as GGUF's llama architecture (Llama, or Mistral without sliding window)",
              config_path, c.architecture);
    RAD_CHECK(c.rope_scaling.type == "default" || c.rope_scaling.type == "linear",
              "{}: rope_scaling \"{}\" is not supported by export-gguf (default, linear)", config_path,
              c.rope_scaling.type);
  }
  // Tokenizer.
  const std::string tok_path = (fs::path(model_dir) / "tokenizer.json").string();
  json tok_json;
  try {
    tok_json = json::parse(read_text_file(tok_path));
  } catch (const json::exception& e) {
    fail("{}: invalid JSON: {}", tok_path, e.what());
  }
  json tok_config = json::object();
  const std::string tok_config_path = (fs::path(model_dir) / "tokenizer_config.json").string();
  if (fs::exists(tok_config_path)) {
    try {
      tok_config = json::parse(read_text_file(tok_config_path));
    } catch (const json::exception& e) {
      fail("{}: invalid JSON: {}", tok_config_path, e.what());
    }
  }
  Tokenizer tokenizer = Tokenizer::from_json(tok_json, tok_config);
  RAD_CHECK(tok_json.contains("model") && tok_json["model"].value("type", "") == "BPE" &&
                tok_json.contains("decoder") && tok_json["decoder"].is_object() &&
                tok_json["decoder"].value("type", "") == "ByteLevel",
            "{}: only byte-level BPE tokenizers (GGUF \"gpt2\") can be exported", tok_path);
  std::string pre = gguf_pre_name_for(tok_json.value("pre_tokenizer", json()), tok_path);
  RAD_CHECK(tokenizer.vocab_size() <= c.n_vocab, "{}: the tokenizer has {} tokens, more than the model's vocab_size {}",
            tok_path, tokenizer.vocab_size(), c.n_vocab);
  std::map<int64_t, bool> added;  // id -> special
  if (tok_json.contains("added_tokens") && tok_json["added_tokens"].is_array())
    for (const auto& a : tok_json["added_tokens"])
      if (a.is_object() && a.contains("id") && a["id"].is_number_integer()) added[a["id"].get<int64_t>()] = a.value("special", false);
  std::vector<std::string> tokens;
  std::vector<int32_t> types;
  std::set<std::string> seen;
  for (int64_t id = 0; id < c.n_vocab; ++id) {
    auto t = tokenizer.id_to_token(id);
    int type = gguf_token::kNormal;
    if (!t) {
      t = fmt::format("[PAD{}]", id);  // ids the tokenizer never produces (embedding rows padded past the vocabulary)
      type = gguf_token::kUnused;
    } else if (added.count(id)) {
      type = added[id] ? gguf_token::kControl : gguf_token::kUserDefined;
    }
    RAD_CHECK(seen.insert(*t).second, "{}: token text \"{}\" (id {}) appears twice", tok_path, *t, id);
    tokens.push_back(*t);
    types.push_back(type);
  }
  std::vector<std::string> merges;
  for (const auto& m : tok_json["model"]["merges"]) {
    if (m.is_string()) merges.push_back(m.get<std::string>());
    else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string())
      merges.push_back(m[0].get<std::string>() + " " + m[1].get<std::string>());
    else fail("{}: a merge is neither \"a b\" nor [\"a\", \"b\"]: {}", tok_path, m.dump());
  }
  // Whether encoding with special tokens adds BOS / EOS (what llama.cpp's add_bos/add_eos mean).
  auto plain = tokenizer.encode("a", false), with = tokenizer.encode("a", true);
  std::optional<int64_t> bos = c.bos_token_id ? c.bos_token_id : tokenizer.bos_id();
  std::optional<int64_t> eos = !c.eos_token_ids.empty() ? std::optional<int64_t>(c.eos_token_ids[0]) : tokenizer.eos_id();
  bool add_bos = with.size() > plain.size() && bos && with.front() == *bos;
  bool add_eos = with.size() > plain.size() && eos && with.back() == *eos;

  GgufWriter w;
  fs::path dir = fs::absolute(model_dir).lexically_normal();
  std::string name = dir.filename().empty() ? dir.parent_path().filename().string() : dir.filename().string();
  w.set("general.architecture", GgufValue::string(hybrid ? kGgufHybridArchitecture : "llama"));
  w.set("general.name", GgufValue::string(name));
  // llama.cpp's llama_ftype numbers: ALL_F32 0, MOSTLY_F16 1, MOSTLY_Q4_0 2, MOSTLY_Q8_0 7, MOSTLY_Q5_0 8,
  // MOSTLY_Q4_K_S 14 (Q4_K throughout, as here), MOSTLY_Q6_K 18, MOSTLY_BF16 32.
  const uint32_t file_type = type == GgmlType::kF32    ? 0
                             : type == GgmlType::kF16  ? 1
                             : type == GgmlType::kQ4_0 ? 2
                             : type == GgmlType::kQ8_0 ? 7
                             : type == GgmlType::kQ5_0 ? 8
                             : type == GgmlType::kQ4_K ? 14
                             : type == GgmlType::kQ6_K ? 18
                                                       : 32;
  w.set("general.file_type", GgufValue::u32(file_type));
  if (hybrid) w.set(kGgufRadistillConfigKey, GgufValue::string(hybrid_config_text));
  w.set("general.quantization_version", GgufValue::u32(2));
  w.set("llama.vocab_size", GgufValue::u32(static_cast<uint32_t>(c.n_vocab)));
  w.set("llama.context_length", GgufValue::u32(static_cast<uint32_t>(c.max_position_embeddings)));
  w.set("llama.embedding_length", GgufValue::u32(static_cast<uint32_t>(c.d_model)));
  w.set("llama.block_count", GgufValue::u32(static_cast<uint32_t>(c.n_layer)));
  w.set("llama.feed_forward_length", GgufValue::u32(static_cast<uint32_t>(c.d_ff)));
  w.set("llama.rope.dimension_count", GgufValue::u32(static_cast<uint32_t>(c.d_head)));
  w.set("llama.attention.head_count", GgufValue::u32(static_cast<uint32_t>(c.n_head)));
  w.set("llama.attention.head_count_kv", GgufValue::u32(static_cast<uint32_t>(c.n_head_kv)));
  if (c.d_head * c.n_head != c.d_model) {
    w.set("llama.attention.key_length", GgufValue::u32(static_cast<uint32_t>(c.d_head)));
    w.set("llama.attention.value_length", GgufValue::u32(static_cast<uint32_t>(c.d_head)));
  }
  w.set("llama.attention.layer_norm_rms_epsilon", GgufValue::f32(static_cast<float>(c.rms_norm_eps)));
  w.set("llama.rope.freq_base", GgufValue::f32(static_cast<float>(c.rope_theta)));
  if (c.rope_scaling.type == "linear") {
    w.set("llama.rope.scaling.type", GgufValue::string("linear"));
    w.set("llama.rope.scaling.factor", GgufValue::f32(static_cast<float>(c.rope_scaling.factor)));
  }
  w.set("tokenizer.ggml.model", GgufValue::string("gpt2"));
  w.set("tokenizer.ggml.pre", GgufValue::string(pre));
  w.set("tokenizer.ggml.tokens", GgufValue::string_array(tokens));
  w.set("tokenizer.ggml.token_type", GgufValue::i32_array(types));
  w.set("tokenizer.ggml.merges", GgufValue::string_array(merges));
  if (bos) w.set("tokenizer.ggml.bos_token_id", GgufValue::u32(static_cast<uint32_t>(*bos)));
  if (eos) w.set("tokenizer.ggml.eos_token_id", GgufValue::u32(static_cast<uint32_t>(*eos)));
  w.set("tokenizer.ggml.add_bos_token", GgufValue::boolean(add_bos));
  w.set("tokenizer.ggml.add_eos_token", GgufValue::boolean(add_eos));
  if (tok_config.contains("chat_template") && tok_config["chat_template"].is_string())
    w.set("tokenizer.chat_template", GgufValue::string(tok_config["chat_template"].get<std::string>()));

  // Tensors, in llama.cpp's usual order (embeddings, layers, final norm, head).
  std::map<std::string, at::Tensor> hf = read_model_tensors(model_dir);
  std::vector<std::string> order = {"model.embed_tokens.weight"};
  for (int64_t l = 0; l < c.n_layer; ++l)
    for (const auto& [suffix, unused] : gguf_layer_names())
      for (const char* kind : {"weight", "bias"}) order.push_back(fmt::format("model.layers.{}.{}.{}", l, suffix, kind));
  order.push_back("model.norm.weight");
  if (!c.tie_word_embeddings) order.push_back("lm_head.weight");
  std::set<std::string> used;
  std::vector<at::Tensor> keep;              // the bytes the writer points to
  std::vector<std::vector<uint8_t>> blocks;  // quantised tensors' bytes
  int64_t n_quantized = 0;
  const at::ScalarType matrix_dtype = type == GgmlType::kF32 ? at::kFloat : type == GgmlType::kBF16 ? at::kBFloat16 : at::kHalf;
  auto add = [&](const std::string& name, const std::string& gguf_name) {
    at::Tensor t = hf.at(name).to(at::kFloat).contiguous();
    // Q and K rows in GGUF's RoPE order, per head (a hybrid keeps fewer heads than the teacher).
    if (name.find("self_attn.q_proj") != std::string::npos || name.find("self_attn.k_proj") != std::string::npos)
      t = rope_rows_hf_to_gguf(t, t.size(0) / c.d_head);
    const bool matrix = t.dim() >= 2;
    const std::optional<GgmlType> block_type = quantized && matrix ? block_type_for(type, t.size(-1)) : std::nullopt;
    if (block_type) {
      const GgmlTypeInfo* info = ggml_type_info(static_cast<uint32_t>(*block_type));
      std::vector<uint8_t> bytes(static_cast<size_t>(t.numel() / static_cast<int64_t>(info->block_elems) *
                                                     static_cast<int64_t>(info->block_bytes)));
      quantize(*block_type, t.data_ptr<float>(), static_cast<uint64_t>(t.numel()), bytes.data());
      blocks.push_back(std::move(bytes));
      w.add_tensor(gguf_name, *block_type, t.sizes().vec(), blocks.back().data(), blocks.back().size());
      ++n_quantized;
    } else {
      t = t.to(matrix ? matrix_dtype : at::kFloat).contiguous();
      keep.push_back(t);
      const GgmlType tt = !matrix ? GgmlType::kF32 : quantized ? GgmlType::kF16 : type;
      w.add_tensor(gguf_name, tt, t.sizes().vec(), t.data_ptr(), static_cast<uint64_t>(t.nbytes()));
    }
    used.insert(name);
  };
  blocks.reserve(hf.size());  // add_tensor keeps pointers into these vectors
  for (const auto& name : order) {
    if (hf.count(name) == 0) {
      // Biases are optional; a hybrid layer that keeps no head has no q/k/v projections.
      const bool optional = name.find(".bias") != std::string::npos ||
                            (hybrid && (name.find("self_attn.q_proj") != std::string::npos ||
                                        name.find("self_attn.k_proj") != std::string::npos ||
                                        name.find("self_attn.v_proj") != std::string::npos));
      RAD_CHECK(optional, "{}: missing tensor \"{}\"", model_dir, name);
      continue;
    }
    add(name, hf_to_gguf_name(name));
  }
  for (const auto& [name, t] : hf) {
    if (used.count(name) || (name == "lm_head.weight" && c.tie_word_embeddings)) continue;
    RAD_CHECK(hybrid && name.find(".self_attn.ssm.") != std::string::npos,
              "{}: tensor \"{}\" has no place in GGUF's llama architecture", model_dir, name);
    add(name, name);  // the SSM heads' tensors keep their Hugging Face names
  }
  w.write(out_path);
  log_info("wrote {}: {}, {} layers, {} tensors ({} of them {}), tokenizer gpt2/{} ({} tokens)", out_path,
           hybrid ? kGgufHybridArchitecture : "llama", c.n_layer, used.size(), quantized ? n_quantized : used.size(),
           ggml_type_name(static_cast<uint32_t>(type)), pre, tokens.size());
}

}  // namespace rad::io
