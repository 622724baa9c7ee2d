#include "rad/io/gguf_llama_meta.h"

#include <fmt/format.h>

#include <map>
#include <regex>
#include <set>

#include "rad/core/error.h"
#include "rad/core/log.h"
#include "rad/io/hf_config.h"

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

}  // namespace

const std::vector<std::pair<std::string, std::string>>& gguf_layer_names() { return layer_names(); }

std::string gguf_pre_name_for(const json& pre_tokenizer, const std::string& where) {
  return pre_name_for(pre_tokenizer, where);
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
                                                                  : std::vector<int64_t>(tokens.size(), gguf_token::kNormal);
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
    if (types[id] == gguf_token::kControl || types[id] == gguf_token::kUserDefined) {
      json a = {{"id", id},         {"content", t},        {"single_word", false},
                {"lstrip", false},  {"rstrip", false},     {"normalized", false},
                {"special", types[id] == gguf_token::kControl}};
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

}  // namespace rad::io
