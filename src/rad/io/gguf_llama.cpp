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
#include "rad/io/hf_config.h"
#include "rad/io/hybrid_checkpoint.h"
#include "rad/io/safetensors.h"
#include "rad/tokenizer/tokenizer.h"

namespace rad::io {

using nlohmann::json;

namespace {

// HF layer suffix <-> GGUF layer suffix (without .weight / .bias).
const std::vector<std::pair<std::string, std::string>>& layer_names() {
  static const std::vector<std::pair<std::string, std::string>> names = {
      {"input_layernorm", "attn_norm"},      {"self_attn.q_proj", "attn_q"},  {"self_attn.k_proj", "attn_k"},
      {"self_attn.v_proj", "attn_v"},        {"self_attn.o_proj", "attn_output"},
      {"post_attention_layernorm", "ffn_norm"}, {"mlp.gate_proj", "ffn_gate"}, {"mlp.up_proj", "ffn_up"},
      {"mlp.down_proj", "ffn_down"},
  };
  return names;
}

// GGUF token types (llama.cpp's llama_token_type).
constexpr int kTokenNormal = 1, kTokenControl = 3, kTokenUserDefined = 4, kTokenUnused = 5;

// Pre-tokenizer regexes of the tokenizer.ggml.pre names we know (as in the models' tokenizer.json).
const char* const kLlama3Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
const char* const kQwen2Regex =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
const char* const kKnownPre = "smollm, starcoder, refact, llama-bpe, qwen2, gpt-2";

json byte_level(bool use_regex, bool trim_offsets = true) {
  return {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", trim_offsets}, {"use_regex", use_regex}};
}

// The tokenizer.json pre_tokenizer of a tokenizer.ggml.pre name; null json when unknown.
json pre_tokenizer_for(const std::string& pre) {
  if (pre == "smollm" || pre == "starcoder" || pre == "refact")
    // Single digits split off, then GPT-2's byte-level split (StarCoder's tokenizer family).
    return {{"type", "Sequence"},
            {"pretokenizers", json::array({{{"type", "Digits"}, {"individual_digits", true}}, byte_level(true)})}};
  auto split = [](const char* regex) {
    return json{{"type", "Split"}, {"pattern", {{"Regex", regex}}}, {"behavior", "Isolated"}, {"invert", false}};
  };
  if (pre == "llama-bpe" || pre == "llama3")
    return {{"type", "Sequence"}, {"pretokenizers", json::array({split(kLlama3Regex), byte_level(false)})}};
  if (pre == "qwen2")
    return {{"type", "Sequence"}, {"pretokenizers", json::array({split(kQwen2Regex), byte_level(false, false)})}};
  if (pre == "gpt-2" || pre == "gpt2") return byte_level(true);
  return json();
}

// Drops the fields that do not change how text is split (offsets only), for comparing pre-tokenizers.
json split_relevant(json j) {
  if (j.is_object()) {
    j.erase("trim_offsets");
    for (auto& [k, v] : j.items()) v = split_relevant(v);
  } else if (j.is_array()) {
    for (auto& v : j) v = split_relevant(v);
  }
  return j;
}

std::string pre_name_for(const json& pre_tokenizer, const std::string& where) {
  for (const char* name : {"smollm", "llama-bpe", "qwen2", "gpt-2"})
    if (split_relevant(pre_tokenizer_for(name)) == split_relevant(pre_tokenizer)) return name;
  fail("{}: its pre_tokenizer has no GGUF name we know (supported: the pre-tokenizers of {}); got {}", where, kKnownPre,
       pre_tokenizer.dump().substr(0, 300));
}

int64_t checked_size(const GgufFile& f, const std::string& key, int64_t max_value) {
  uint64_t v = f.get_uint(key);
  RAD_CHECK(v >= 1 && v <= static_cast<uint64_t>(max_value), "{}: metadata \"{}\" must be in 1..{}, got {}", f.path(),
            key, max_value, v);
  return static_cast<int64_t>(v);
}

// A float32 metadata value as the shortest decimal that reads back as the same float (1e-05, not
// 9.99999974737875e-06), as config.json files write it.
double short_float(double v) { return std::stod(fmt::format("{}", static_cast<float>(v))); }

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

std::string hf_to_gguf_name(const std::string& n) {
  if (n == "model.embed_tokens.weight") return "token_embd.weight";
  if (n == "model.norm.weight") return "output_norm.weight";
  if (n == "lm_head.weight") return "output.weight";
  static const std::regex layer(R"(model\.layers\.(\d+)\.(.+)\.(weight|bias))");
  std::smatch m;
  if (!std::regex_match(n, m, layer)) return "";
  for (const auto& [hf, gg] : layer_names())
    if (m[2] == hf) return "blk." + m[1].str() + "." + gg + "." + m[3].str();
  return "";
}

std::string gguf_to_hf_name(const std::string& n) {
  if (n == "token_embd.weight") return "model.embed_tokens.weight";
  if (n == "output_norm.weight") return "model.norm.weight";
  if (n == "output.weight") return "lm_head.weight";
  static const std::regex layer(R"(blk\.(\d+)\.([a-z_]+)\.(weight|bias))");
  std::smatch m;
  if (!std::regex_match(n, m, layer)) return "";
  for (const auto& [hf, gg] : layer_names())
    if (m[2] == gg) return "model.layers." + m[1].str() + "." + hf + "." + m[3].str();
  return "";
}

// ---------------------------------------------------------------------------------------------------
// Import

ModelConfig config_from_gguf(const GgufFile& f) {
  const std::string& arch = f.get_string("general.architecture");
  RAD_CHECK(arch == "llama", "{}: general.architecture is \"{}\"; only \"llama\" is supported", f.path(), arch);
  const std::string p = "llama.";
  RAD_CHECK(!f.has_tensor("rope_freqs.weight"),
            "{}: has rope_freqs.weight (Llama 3.1-style RoPE scaling), which import-gguf does not support", f.path());
  constexpr int64_t kMaxDim = 1 << 20, kMaxLayers = 4096;
  json j;
  j["architectures"] = {"LlamaForCausalLM"};
  j["model_type"] = "llama";
  int64_t d_model = checked_size(f, p + "embedding_length", kMaxDim);
  int64_t n_head = checked_size(f, p + "attention.head_count", kMaxDim);
  const GgufValue* kv = f.find(p + "attention.head_count_kv");
  RAD_CHECK(kv == nullptr || !kv->is_array(), "{}: per-layer head_count_kv arrays are not supported", f.path());
  int64_t n_head_kv = kv ? checked_size(f, p + "attention.head_count_kv", kMaxDim) : n_head;
  j["hidden_size"] = d_model;
  j["num_hidden_layers"] = checked_size(f, p + "block_count", kMaxLayers);
  j["num_attention_heads"] = n_head;
  j["num_key_value_heads"] = n_head_kv;
  j["intermediate_size"] = checked_size(f, p + "feed_forward_length", kMaxDim);
  j["max_position_embeddings"] = f.has(p + "context_length") ? checked_size(f, p + "context_length", 1 << 24) : 2048;
  int64_t d_head = f.has(p + "attention.key_length") ? checked_size(f, p + "attention.key_length", kMaxDim)
                                                     : (d_model % n_head == 0 ? d_model / n_head : 0);
  RAD_CHECK(d_head > 0, "{}: embedding_length {} is not a multiple of head_count {} and there is no attention.key_length",
            f.path(), d_model, n_head);
  if (f.has(p + "attention.value_length"))
    RAD_CHECK(static_cast<int64_t>(f.get_uint(p + "attention.value_length")) == d_head,
              "{}: attention.value_length {} differs from the key length {}", f.path(),
              f.get_uint(p + "attention.value_length"), d_head);
  if (d_head * n_head != d_model) j["head_dim"] = d_head;
  if (f.has(p + "rope.dimension_count"))
    RAD_CHECK(static_cast<int64_t>(f.get_uint(p + "rope.dimension_count")) == d_head,
              "{}: rope.dimension_count {} differs from the head dimension {} (partial RoPE is not supported)", f.path(),
              f.get_uint(p + "rope.dimension_count"), d_head);
  j["rms_norm_eps"] = short_float(f.opt_float(p + "attention.layer_norm_rms_epsilon").value_or(1e-5));
  j["rope_theta"] = short_float(f.opt_float(p + "rope.freq_base").value_or(10000.0));
  std::string scaling = f.opt_string(p + "rope.scaling.type").value_or("none");
  if (scaling == "linear") {
    j["rope_scaling"] = {{"rope_type", "linear"}, {"factor", short_float(f.get_float(p + "rope.scaling.factor"))}};
  } else {
    RAD_CHECK(scaling == "none", "{}: rope.scaling.type \"{}\" is not supported (none, linear)", f.path(), scaling);
    j["rope_scaling"] = nullptr;
  }
  const GgufTensorInfo& embd = f.tensor("token_embd.weight");
  RAD_CHECK(embd.dims.size() == 2, "{}: token_embd.weight must be 2-D", f.path());
  int64_t n_vocab = static_cast<int64_t>(embd.dims[1]);
  if (f.has(p + "vocab_size"))
    RAD_CHECK(static_cast<int64_t>(f.get_uint(p + "vocab_size")) == n_vocab,
              "{}: llama.vocab_size {} differs from token_embd.weight's {} rows", f.path(), f.get_uint(p + "vocab_size"),
              n_vocab);
  j["vocab_size"] = n_vocab;
  j["tie_word_embeddings"] = !f.has_tensor("output.weight");
  j["attention_bias"] = f.has_tensor("blk.0.attn_q.bias");
  j["mlp_bias"] = f.has_tensor("blk.0.ffn_up.bias");
  j["hidden_act"] = "silu";
  if (auto bos = f.opt_uint("tokenizer.ggml.bos_token_id")) j["bos_token_id"] = *bos;
  if (auto eos = f.opt_uint("tokenizer.ggml.eos_token_id")) j["eos_token_id"] = *eos;
  j["torch_dtype"] = "float32";
  return config_from_hf_json(j, f.path());
}

std::pair<json, json> tokenizer_from_gguf(const GgufFile& f) {
  const std::string& model = f.get_string("tokenizer.ggml.model");
  RAD_CHECK(model == "gpt2", "{}: tokenizer.ggml.model \"{}\" is not supported (only \"gpt2\", byte-level BPE)", f.path(),
            model);
  const std::vector<std::string>& tokens = f.get_string_array("tokenizer.ggml.tokens");
  const std::vector<std::string>& merges = f.get_string_array("tokenizer.ggml.merges");
  std::vector<int64_t> types = f.has("tokenizer.ggml.token_type") ? f.get_int_array("tokenizer.ggml.token_type")
                                                                  : std::vector<int64_t>(tokens.size(), kTokenNormal);
  RAD_CHECK(types.size() == tokens.size(), "{}: tokenizer.ggml.token_type has {} entries for {} tokens", f.path(),
            types.size(), tokens.size());
  std::string pre = f.opt_string("tokenizer.ggml.pre").value_or("gpt-2");
  json pre_tokenizer = pre_tokenizer_for(pre);
  RAD_CHECK(!pre_tokenizer.is_null(), "{}: tokenizer.ggml.pre \"{}\" is not supported (supported: {})", f.path(), pre,
            kKnownPre);

  json vocab = json::object();
  json added = json::array();
  json added_decoder = json::object();
  size_t duplicates = 0;
  for (size_t id = 0; id < tokens.size(); ++id) {
    const std::string& t = tokens[id];
    if (vocab.contains(t)) {
      ++duplicates;  // a second token with the same text can never be produced by encoding; keep the first
    } else {
      vocab[t] = id;
    }
    if (types[id] == kTokenControl || types[id] == kTokenUserDefined) {
      json a = {{"id", id},         {"content", t},        {"single_word", false},
                {"lstrip", false},  {"rstrip", false},     {"normalized", false},
                {"special", types[id] == kTokenControl}};
      added.push_back(a);
      json d = a;
      d.erase("id");
      added_decoder[std::to_string(id)] = d;
    }
  }
  if (duplicates > 0) log_warn("{}: {} tokens repeat an earlier token's text; the first id is kept", f.path(), duplicates);

  auto token_name = [&](const char* key) -> std::optional<std::string> {
    auto id = f.opt_uint(key);
    if (!id) return std::nullopt;
    RAD_CHECK(*id < tokens.size(), "{}: {} is {}, outside the {}-token vocabulary", f.path(), key, *id, tokens.size());
    return tokens[*id];
  };
  auto bos = token_name("tokenizer.ggml.bos_token_id");
  auto eos = token_name("tokenizer.ggml.eos_token_id");
  auto unk = token_name("tokenizer.ggml.unknown_token_id");
  auto pad = token_name("tokenizer.ggml.padding_token_id");
  bool add_bos = f.opt_bool("tokenizer.ggml.add_bos_token").value_or(false);
  bool add_eos = f.opt_bool("tokenizer.ggml.add_eos_token").value_or(false);
  RAD_CHECK(!add_bos || bos, "{}: tokenizer.ggml.add_bos_token is true but there is no bos_token_id", f.path());
  RAD_CHECK(!add_eos || eos, "{}: tokenizer.ggml.add_eos_token is true but there is no eos_token_id", f.path());

  json post = {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", false}, {"use_regex", true}};
  if (add_bos || add_eos) {
    json single = json::array(), pair = json::array(), special = json::object();
    auto add_special = [&](const std::string& name, int type_id, json& seq) {
      seq.push_back({{"SpecialToken", {{"id", name}, {"type_id", type_id}}}});
      special[name] = {{"id", name}, {"ids", {vocab.at(name)}}, {"tokens", {name}}};
    };
    if (add_bos) add_special(*bos, 0, single);
    single.push_back({{"Sequence", {{"id", "A"}, {"type_id", 0}}}});
    if (add_eos) add_special(*eos, 0, single);
    if (add_bos) add_special(*bos, 0, pair);
    pair.push_back({{"Sequence", {{"id", "A"}, {"type_id", 0}}}});
    if (add_eos) add_special(*eos, 0, pair);
    if (add_bos) add_special(*bos, 1, pair);
    pair.push_back({{"Sequence", {{"id", "B"}, {"type_id", 1}}}});
    if (add_eos) add_special(*eos, 1, pair);
    post = {{"type", "Sequence"},
            {"processors",
             json::array({post, {{"type", "TemplateProcessing"}, {"single", single}, {"pair", pair}, {"special_tokens", special}}})}};
  }

  json tok = {
      {"version", "1.0"},
      {"truncation", nullptr},
      {"padding", nullptr},
      {"added_tokens", added},
      {"normalizer", nullptr},
      {"pre_tokenizer", pre_tokenizer},
      {"post_processor", post},
      {"decoder", {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}, {"use_regex", true}}},
      {"model",
       {{"type", "BPE"},
        {"dropout", nullptr},
        {"unk_token", nullptr},
        {"continuing_subword_prefix", nullptr},
        {"end_of_word_suffix", nullptr},
        {"fuse_unk", false},
        {"byte_fallback", false},
        // llama.cpp encodes Llama 3 vocabularies with whole-word lookups first, as the tokenizers
        // library does with ignore_merges (set in Llama 3's tokenizer.json).
        {"ignore_merges", pre == "llama-bpe" || pre == "llama3"},
        {"vocab", std::move(vocab)},
        {"merges", merges}}},
  };
  json config = {{"tokenizer_class", "PreTrainedTokenizerFast"},
                 {"clean_up_tokenization_spaces", false},
                 {"add_bos_token", add_bos},
                 {"add_eos_token", add_eos},
                 {"added_tokens_decoder", added_decoder}};
  if (bos) config["bos_token"] = *bos;
  if (eos) config["eos_token"] = *eos;
  if (unk) config["unk_token"] = *unk;
  if (pad) config["pad_token"] = *pad;
  if (auto tmpl = f.opt_string("tokenizer.chat_template")) config["chat_template"] = *tmpl;
  if (auto ctx = f.opt_uint("llama.context_length")) config["model_max_length"] = *ctx;
  return {tok, config};
}

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
              "F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q6_K)", f.path(), t.name, ggml_type_name(static_cast<uint32_t>(t.type)));
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

void export_gguf(const std::string& model_dir, const std::string& out_path, GgmlType type) {
  RAD_CHECK(type == GgmlType::kF32 || type == GgmlType::kF16 || type == GgmlType::kBF16,
            "export-gguf: the tensor type must be F32, F16 or BF16");
  RAD_CHECK(!is_hybrid_dir(model_dir), "{}: is a hybrid; llama.cpp has no architecture for per-head hybrids, export-gguf "
            "writes teachers only", model_dir);
  namespace fs = std::filesystem;
  const std::string config_path = (fs::path(model_dir) / "config.json").string();
  ModelConfig c = load_hf_config(config_path);
  RAD_CHECK(c.model_type == "llama" || (c.model_type == "mistral" && c.sliding_window == 0),
            "{}: {} cannot be written as GGUF's llama architecture (Llama, or Mistral without sliding window)", config_path,
            c.architecture);
  RAD_CHECK(c.rope_scaling.type == "default" || c.rope_scaling.type == "linear",
            "{}: rope_scaling \"{}\" is not supported by export-gguf (default, linear)", config_path, c.rope_scaling.type);

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
  std::string pre = pre_name_for(tok_json.value("pre_tokenizer", json()), tok_path);
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
    int type = kTokenNormal;
    if (!t) {
      t = fmt::format("[PAD{}]", id);  // ids the tokenizer never produces (embedding rows padded past the vocabulary)
      type = kTokenUnused;
    } else if (added.count(id)) {
      type = added[id] ? kTokenControl : kTokenUserDefined;
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
  w.set("general.architecture", GgufValue::string("llama"));
  w.set("general.name", GgufValue::string(name));
  w.set("general.file_type", GgufValue::u32(type == GgmlType::kF32 ? 0 : type == GgmlType::kF16 ? 1 : 32));
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
    for (const auto& [suffix, unused] : layer_names())
      for (const char* kind : {"weight", "bias"}) order.push_back(fmt::format("model.layers.{}.{}.{}", l, suffix, kind));
  order.push_back("model.norm.weight");
  if (!c.tie_word_embeddings) order.push_back("lm_head.weight");
  std::set<std::string> used;
  std::vector<at::Tensor> keep;  // the bytes the writer points to
  const at::ScalarType matrix_dtype = type == GgmlType::kF32 ? at::kFloat : type == GgmlType::kF16 ? at::kHalf : at::kBFloat16;
  for (const auto& name : order) {
    auto it = hf.find(name);
    if (it == hf.end()) {
      RAD_CHECK(name.find(".bias") != std::string::npos, "{}: missing tensor \"{}\"", model_dir, name);
      continue;
    }
    at::Tensor t = it->second.to(at::kFloat);
    if (name.find("self_attn.q_proj") != std::string::npos) t = rope_rows_hf_to_gguf(t, c.n_head);
    if (name.find("self_attn.k_proj") != std::string::npos) t = rope_rows_hf_to_gguf(t, c.n_head_kv);
    bool matrix = t.dim() >= 2;
    t = t.to(matrix ? matrix_dtype : at::kFloat).contiguous();
    GgmlType tt = matrix ? type : GgmlType::kF32;
    keep.push_back(t);
    w.add_tensor(hf_to_gguf_name(name), tt, t.sizes().vec(), t.data_ptr(), static_cast<uint64_t>(t.nbytes()));
    used.insert(name);
  }
  for (const auto& [name, t] : hf)
    RAD_CHECK(used.count(name) || (name == "lm_head.weight" && c.tie_word_embeddings),
              "{}: tensor \"{}\" has no place in GGUF's llama architecture", model_dir, name);
  w.write(out_path);
  log_info("wrote {}: llama, {} layers, {} tensors as {}, tokenizer gpt2/{} ({} tokens)", out_path, c.n_layer, used.size(),
           ggml_type_name(static_cast<uint32_t>(type)), pre, tokens.size());
}

}  // namespace rad::io
