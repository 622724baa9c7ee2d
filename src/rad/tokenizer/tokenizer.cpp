#include "rad/tokenizer/tokenizer.h"

#include <nlohmann/json.hpp>
#include <algorithm>
#include <filesystem>
#include <sys/stat.h>
#include <unordered_map>

#include "rad/core/atomic_file.h"
#include "rad/core/error.h"
#include "rad/core/log.h"
#include "rad/io/gguf.h"
#include "rad/io/gguf_llama_meta.h"
#include "rad/tokenizer/added_tokens.h"
#include "rad/tokenizer/bpe_model.h"
#include "rad/tokenizer/decoders.h"
#include "rad/tokenizer/normalizers.h"
#include "rad/tokenizer/post_processor.h"
#include "rad/tokenizer/pre_tokenizers.h"
#include "rad/tokenizer/unicode.h"

namespace rad {

struct Tokenizer::Impl {
  std::unique_ptr<Normalizer> normalizer;
  std::unique_ptr<PreTokenizer> pre_tokenizer;
  BpeModel model;
  std::unique_ptr<PostProcessor> post_processor;
  std::unique_ptr<Decoder> decoder;
  std::vector<AddedToken> added;
  std::unordered_map<std::string, int64_t> added_by_content;
  std::unordered_map<int64_t, size_t> added_by_id;
  AddedTokenMatcher raw_matcher, normalized_matcher;
  std::optional<int64_t> bos, eos;
  // What encode(..., true) adds around the text (see special_prefix()).
  std::vector<int64_t> prefix, suffix;

  void encode_section(std::string_view text, bool at_text_start, std::vector<int64_t>& out) const;
};

namespace {

// tokenizer_config.json names tokens either as strings or as {"content": ...} objects.
std::optional<std::string> config_token(const nlohmann::json& config, const char* key) {
  if (!config.is_object() || !config.contains(key)) return std::nullopt;
  const auto& v = config.at(key);
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v.at("content").is_string()) return v.at("content").get<std::string>();
  return std::nullopt;
}

// tokenizer_config.json's add_bos_token / add_eos_token: absent or null -> nullopt.
std::optional<bool> config_flag(const nlohmann::json& config, const char* key) {
  if (!config.is_object() || !config.contains(key) || config.at(key).is_null()) return std::nullopt;
  RAD_CHECK(config.at(key).is_boolean(), "tokenizer_config.json: \"{}\" must be true or false, got {}", key,
            config.at(key).dump().substr(0, 100));
  return config.at(key).get<bool>();
}

bool file_exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

}  // namespace

Tokenizer Tokenizer::load(const std::string& dir) {
  if (std::filesystem::is_regular_file(dir)) {  // a GGUF file: its tokenizer.ggml.* metadata
    auto [tokenizer, config] = io::tokenizer_from_gguf(*io::GgufFile::open(dir));
    try {
      return from_json(tokenizer, config);
    } catch (const nlohmann::json::exception& e) {
      fail("{}: the tokenizer rebuilt from its metadata is not usable: {}", dir, e.what());
    }
  }
  std::string path = dir + "/tokenizer.json";
  RAD_CHECK(file_exists(path), "no tokenizer.json in {} (a Hugging Face tokenizer is needed here)", dir);
  nlohmann::json tokenizer, config;
  try {
    tokenizer = nlohmann::json::parse(read_text_file(path));
  } catch (const nlohmann::json::exception& e) {
    fail("{}: invalid JSON: {}", path, e.what());
  }
  std::string config_path = dir + "/tokenizer_config.json";
  if (file_exists(config_path)) {
    try {
      config = nlohmann::json::parse(read_text_file(config_path));
    } catch (const nlohmann::json::exception& e) {
      fail("{}: invalid JSON: {}", config_path, e.what());
    }
  }
  try {
    return from_json(tokenizer, config);
  } catch (const nlohmann::json::exception& e) {
    fail("{}: unexpected structure: {}", path, e.what());
  }
}

Tokenizer Tokenizer::from_json(const nlohmann::json& tokenizer, const nlohmann::json& config) {
  // A field of the wrong type or a missing key surfaces as a nlohmann exception deep in the
  // component parsers; report it as a tokenizer.json error (found by fuzzing: it escaped before).
  try {
    return from_json_checked(tokenizer, config);
  } catch (const nlohmann::json::exception& e) {
    fail("tokenizer.json: unexpected structure: {}", e.what());
  }
}

Tokenizer Tokenizer::from_json_checked(const nlohmann::json& tokenizer, const nlohmann::json& config) {
  RAD_CHECK(tokenizer.is_object() && tokenizer.contains("model"), "tokenizer.json: no \"model\" object");
  auto impl = std::make_shared<Impl>();
  auto get = [&](const char* key) { return tokenizer.contains(key) ? tokenizer.at(key) : nlohmann::json(); };
  impl->normalizer = make_normalizer(get("normalizer"));
  impl->pre_tokenizer = make_pre_tokenizer(get("pre_tokenizer"));
  impl->model = BpeModel::from_json(tokenizer.at("model"));
  impl->post_processor = make_post_processor(get("post_processor"));
  impl->decoder = make_decoder(get("decoder"));

  std::vector<std::string> raw_patterns, norm_patterns;
  std::vector<AddedToken> raw_tokens, norm_tokens;
  if (tokenizer.contains("added_tokens") && tokenizer.at("added_tokens").is_array()) {
    for (const auto& a : tokenizer.at("added_tokens")) {
      AddedToken t;
      t.content = a.at("content").get<std::string>();
      RAD_CHECK(a.at("id").is_number_integer(), "tokenizer.json: added token id must be an integer, got {}",
                a.at("id").dump());
      t.id = a.at("id").get<int64_t>();
      // Same bound as the model's ids: ids size embedding tables downstream (fuzzing found huge ones).
      const int64_t limit = 4 * static_cast<int64_t>(impl->model.size() + tokenizer.at("added_tokens").size()) + 65536;
      RAD_CHECK(t.id >= 0 && t.id < limit, "tokenizer.json: added token \"{}\" has id {} outside [0, {})", t.content,
                t.id, limit);
      t.special = a.value("special", false);
      t.lstrip = a.value("lstrip", false);
      t.rstrip = a.value("rstrip", false);
      t.single_word = a.value("single_word", false);
      t.normalized = a.value("normalized", !t.special);
      impl->added_by_content[t.content] = t.id;
      impl->added_by_id[t.id] = impl->added.size();
      impl->added.push_back(t);
      if (t.normalized && impl->normalizer) {
        std::string pattern = t.content;
        impl->normalizer->normalize(pattern);
        norm_patterns.push_back(pattern);
        norm_tokens.push_back(t);
      } else {
        raw_patterns.push_back(t.content);
        raw_tokens.push_back(t);
      }
    }
  }
  impl->raw_matcher = AddedTokenMatcher(std::move(raw_patterns), std::move(raw_tokens));
  impl->normalized_matcher = AddedTokenMatcher(std::move(norm_patterns), std::move(norm_tokens));

  Tokenizer t;
  t.impl_ = impl;
  if (auto bos = config_token(config, "bos_token")) impl->bos = t.token_to_id(*bos);
  if (auto eos = config_token(config, "eos_token")) impl->eos = t.token_to_id(*eos);

  // The post-processor's special tokens for one sequence, found by running it on a placeholder:
  // every supported kind (TemplateProcessing, Bert/Roberta, ByteLevel, Sequence) writes
  // prefix + sequence + suffix.
  if (impl->post_processor) {
    constexpr int64_t kPlaceholder = -1;
    std::vector<int64_t> probe{kPlaceholder};
    impl->post_processor->process(probe);
    auto at = std::find(probe.begin(), probe.end(), kPlaceholder);
    RAD_CHECK(at != probe.end() && std::count(probe.begin(), probe.end(), kPlaceholder) == 1,
              "tokenizer.json: the post_processor's single template must hold the sequence ($A) exactly once");
    impl->prefix.assign(probe.begin(), at);
    impl->suffix.assign(at + 1, probe.end());
  }
  // tokenizer_config.json's add_bos_token / add_eos_token, when given, decide: llama.cpp's converter
  // (gguf-py SpecialVocab) lets them override what it reads from the post-processor, and
  // transformers' LlamaTokenizerFast rebuilds its post-processor from them. Tokenizers that carry
  // both agree (every fixture here); one that says add_bos_token: true with a ByteLevel-only
  // post-processor gets BOS, as llama.cpp's GGUF of it would.
  if (auto add = config_flag(config, "add_bos_token")) {
    const bool has = !impl->prefix.empty() && impl->bos && impl->prefix.front() == *impl->bos;
    if (*add && !has) {
      RAD_CHECK(impl->bos.has_value(), "tokenizer_config.json: add_bos_token is true but bos_token is missing or not a token");
      impl->prefix.insert(impl->prefix.begin(), *impl->bos);
    } else if (!*add && has) {
      impl->prefix.erase(impl->prefix.begin());
    }
  }
  if (auto add = config_flag(config, "add_eos_token")) {
    const bool has = !impl->suffix.empty() && impl->eos && impl->suffix.back() == *impl->eos;
    if (*add && !has) {
      RAD_CHECK(impl->eos.has_value(), "tokenizer_config.json: add_eos_token is true but eos_token is missing or not a token");
      impl->suffix.push_back(*impl->eos);
    } else if (!*add && has) {
      impl->suffix.pop_back();
    }
  }
  return t;
}

void Tokenizer::Impl::encode_section(std::string_view text, bool at_text_start, std::vector<int64_t>& out) const {
  thread_local PieceList list;
  list.text.assign(text.data(), text.size());
  list.pieces.assign(1, Piece{0, text.size(), at_text_start});
  if (pre_tokenizer) pre_tokenizer->pre_tokenize(list);
  for (const Piece& p : list.pieces) model.encode_word(list.view(p), out);
}

std::vector<int64_t> Tokenizer::encode(std::string_view input, bool add_special_tokens) const {
  const Impl& m = *impl_;
  std::string text = unicode::sanitize_utf8(input);
  std::vector<int64_t> ids;
  ids.reserve(text.size() / 3 + 8);
  m.raw_matcher.split(text, [&](size_t b, size_t e, int token) {
    if (token >= 0) {
      ids.push_back(m.raw_matcher.token(token).id);
      return;
    }
    std::string section = text.substr(b, e - b);
    if (m.normalizer) m.normalizer->normalize(section);
    if (section.empty()) return;
    bool at_start = b == 0;
    m.normalized_matcher.split(section, [&](size_t nb, size_t ne, int ntoken) {
      if (ntoken >= 0) {
        ids.push_back(m.normalized_matcher.token(ntoken).id);
        return;
      }
      m.encode_section(std::string_view(section).substr(nb, ne - nb), at_start && nb == 0, ids);
    });
  });
  if (add_special_tokens && !(m.prefix.empty() && m.suffix.empty())) {
    ids.insert(ids.begin(), m.prefix.begin(), m.prefix.end());
    ids.insert(ids.end(), m.suffix.begin(), m.suffix.end());
  }
  return ids;
}

std::string Tokenizer::decode(const std::vector<int64_t>& ids, bool skip_special_tokens) const {
  const Impl& m = *impl_;
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (int64_t id : ids) {
    auto added = m.added_by_id.find(id);
    if (added != m.added_by_id.end()) {
      const AddedToken& t = m.added[added->second];
      if (skip_special_tokens && t.special) continue;
      tokens.push_back(t.content);
      continue;
    }
    const std::string* token = m.model.id_to_token(id);
    RAD_CHECK(token != nullptr, "decode: token id {} is not in the vocabulary (size {})", id, vocab_size());
    tokens.push_back(*token);
  }
  if (!m.decoder) {
    std::string out;
    for (size_t i = 0; i < tokens.size(); ++i) out += (i ? " " : "") + tokens[i];
    return out;
  }
  m.decoder->decode_chain(tokens);
  std::string out;
  for (const auto& t : tokens) out += t;
  return out;
}

int64_t Tokenizer::vocab_size() const {
  int64_t n = impl_->model.size();
  for (const auto& t : impl_->added) n = std::max(n, t.id + 1);
  return n;
}

std::optional<int64_t> Tokenizer::token_to_id(std::string_view token) const {
  auto it = impl_->added_by_content.find(std::string(token));
  if (it != impl_->added_by_content.end()) return it->second;
  return impl_->model.token_to_id(token);
}

std::optional<std::string> Tokenizer::id_to_token(int64_t id) const {
  auto it = impl_->added_by_id.find(id);
  if (it != impl_->added_by_id.end()) return impl_->added[it->second].content;
  const std::string* t = impl_->model.id_to_token(id);
  if (!t) return std::nullopt;
  return *t;
}

std::optional<int64_t> Tokenizer::bos_id() const { return impl_->bos; }
std::optional<int64_t> Tokenizer::eos_id() const { return impl_->eos; }
bool Tokenizer::has_post_processor() const { return !impl_->prefix.empty() || !impl_->suffix.empty(); }
const std::vector<int64_t>& Tokenizer::special_prefix() const { return impl_->prefix; }
const std::vector<int64_t>& Tokenizer::special_suffix() const { return impl_->suffix; }

std::vector<int64_t> encode_prompt(const Tokenizer& tokenizer, std::string_view text, bool add_special_tokens) {
  std::vector<int64_t> ids = tokenizer.encode(text, add_special_tokens);
  const auto& prefix = tokenizer.special_prefix();
  if (add_special_tokens && !prefix.empty() && ids.size() >= 2 * prefix.size() &&
      std::equal(prefix.begin(), prefix.end(), ids.begin() + static_cast<std::ptrdiff_t>(prefix.size())))
    log_warn("the prompt starts with the special token(s) the tokenizer adds ({}), so they appear twice; pass "
             "--no-special-tokens if the text already has them",
             tokenizer.id_to_token(prefix.front()).value_or("?"));
  return ids;
}

std::vector<int64_t> encode_chat_prompt(const Tokenizer& tokenizer, std::string_view rendered) {
  return tokenizer.encode(rendered, /*add_special_tokens=*/false);
}

std::vector<int64_t> prompt_prefix(const Tokenizer& tokenizer, bool add_special_tokens) {
  return add_special_tokens ? tokenizer.special_prefix() : std::vector<int64_t>{};
}

}  // namespace rad
