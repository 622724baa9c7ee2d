#include "rad/serve/api.h"

#include <cctype>
#include <cmath>
#include <limits>
#include <optional>
#include <random>

#include "rad/core/error.h"
#include "rad/tokenizer/unicode.h"

namespace rad::serve {
namespace {

using json = nlohmann::json;

[[noreturn]] void bad(const std::string& param, const std::string& message) { throw ApiError(400, message, param); }

const char* kind(const json& v) { return v.type_name(); }

// Optional field getters: absent or null -> the default; any other type -> a 400 naming the field.
bool get_bool(const json& j, const char* key, bool dflt) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return dflt;
  if (!it->is_boolean()) bad(key, fmt::format("'{}' must be a boolean, got {}", key, kind(*it)));
  return it->get<bool>();
}

double get_number(const json& j, const char* key, double dflt, double lo, double hi, bool lo_open = false) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return dflt;
  if (!it->is_number()) bad(key, fmt::format("'{}' must be a number, got {}", key, kind(*it)));
  const double v = it->get<double>();
  if (!(lo_open ? v > lo : v >= lo) || !(v <= hi))
    bad(key, fmt::format("'{}' must be in {}{}, {}], got {}", key, lo_open ? "(" : "[", lo, hi, v));
  return v;
}

std::optional<int64_t> get_int(const json& j, const char* key, int64_t lo, int64_t hi) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return std::nullopt;
  // JSON numbers like 16.0 are integers to Python clients; accept whole floats.
  int64_t v;
  if (it->is_number_integer()) {
    v = it->get<int64_t>();
    if (it->is_number_unsigned() && it->get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      bad(key, fmt::format("'{}' must be an integer in [{}, {}], got {}", key, lo, hi, it->dump()));
  } else if (it->is_number_float() && std::floor(it->get<double>()) == it->get<double>() &&
             std::abs(it->get<double>()) < 9e15) {
    v = static_cast<int64_t>(it->get<double>());
  } else {
    bad(key, fmt::format("'{}' must be an integer, got {}", key, it->is_number() ? it->dump() : kind(*it)));
  }
  if (v < lo || v > hi) bad(key, fmt::format("'{}' must be an integer in [{}, {}], got {}", key, lo, hi, v));
  return v;
}

std::vector<int64_t> token_ids(const json& list, const char* param, int64_t n_vocab) {
  std::vector<int64_t> ids;
  ids.reserve(list.size());
  for (size_t i = 0; i < list.size(); ++i) {
    const json& t = list[i];
    if (!t.is_number_integer()) bad(param, fmt::format("'{}' token {} must be an integer, got {}", param, i, kind(t)));
    const int64_t id = t.is_number_unsigned() && t.get<uint64_t>() > static_cast<uint64_t>(n_vocab) ? n_vocab : t.get<int64_t>();
    if (id < 0 || id >= n_vocab)
      bad(param, fmt::format("'{}' token {} is {}, outside the vocabulary [0, {})", param, i, t.dump(), n_vocab));
    ids.push_back(id);
  }
  return ids;
}

// OpenAI content: a string, or a list of parts of which only {"type": "text", "text": ...} exist here.
std::string message_content(const json& m, size_t i) {
  const std::string param = fmt::format("messages[{}].content", i);
  auto it = m.find("content");
  if (it == m.end() || it->is_null()) bad(param, fmt::format("'{}' is missing (expected a string)", param));
  if (it->is_string()) return it->get<std::string>();
  if (!it->is_array()) bad(param, fmt::format("'{}' must be a string or a list of text parts, got {}", param, kind(*it)));
  std::string text;
  for (size_t k = 0; k < it->size(); ++k) {
    const json& part = (*it)[k];
    if (!part.is_object() || part.value("type", "") != "text" || !part.contains("text") || !part["text"].is_string())
      bad(param, fmt::format("'{}[{}]' must be {{\"type\": \"text\", \"text\": string}} (only text is supported)", param, k));
    text += part["text"].get<std::string>();
  }
  return text;
}

std::vector<int64_t> chat_prompt(const json& req, const ApiContext& ctx) {
  if (!ctx.chat_template)
    throw ApiError(400,
                   fmt::format("the model {} has no chat_template in tokenizer_config.json (nor, for a GGUF file, "
                               "tokenizer.chat_template), so it cannot format chat messages; use /v1/completions "
                               "with a prompt instead",
                               ctx.model_dir),
                   "messages");
  auto it = req.find("messages");
  if (it == req.end()) bad("messages", "'messages' is missing (expected a list of {\"role\", \"content\"})");
  if (!it->is_array() || it->empty())
    bad("messages", fmt::format("'messages' must be a non-empty list, got {}", it->is_array() ? "an empty list" : kind(*it)));
  json messages = json::array();
  for (size_t i = 0; i < it->size(); ++i) {
    const json& m = (*it)[i];
    if (!m.is_object()) bad("messages", fmt::format("'messages[{}]' must be an object, got {}", i, kind(m)));
    auto role = m.find("role");
    if (role == m.end() || !role->is_string())
      bad(fmt::format("messages[{}].role", i), fmt::format("'messages[{}].role' must be a string", i));
    if (m.contains("tool_calls") && !m["tool_calls"].is_null())
      bad(fmt::format("messages[{}].tool_calls", i), "tool calls are not supported");
    messages.push_back({{"role", *role}, {"content", message_content(m, i)}});
  }
  std::string text;
  try {
    text = ctx.chat_template->render(messages);
  } catch (const Error& e) {
    throw ApiError(400, fmt::format("the chat template cannot format these messages: {}", e.what()), "messages");
  }
  return encode_chat_prompt(ctx.tokenizer, text);  // the template adds BOS where it wants it
}

// The prompt's tokens; *text: the prompt as sent (a string) or its ids decoded (for echo).
std::vector<int64_t> completion_prompt(const json& req, const ApiContext& ctx, std::string* text) {
  auto it = req.find("prompt");
  if (it == req.end() || it->is_null()) bad("prompt", "'prompt' is missing (expected a string or a list of token ids)");
  json p = *it;
  if (p.is_array() && p.size() == 1 && (p[0].is_string() || p[0].is_array())) p = p[0];  // ["text"] or [[ids]]
  if (p.is_string()) {
    *text = p.get<std::string>();
    return encode_prompt(ctx.tokenizer, *text, ctx.add_special_tokens);
  }
  if (p.is_array()) {
    if (!p.empty() && (p[0].is_string() || p[0].is_array()))
      bad("prompt", "'prompt' holds several prompts; send one prompt per request");
    std::vector<int64_t> ids = token_ids(p, "prompt", ctx.n_vocab);
    *text = ctx.tokenizer.decode(ids, /*skip_special_tokens=*/true);
    return ids;
  }
  bad("prompt", fmt::format("'prompt' must be a string or a list of token ids, got {}", kind(p)));
}

std::vector<std::string> stop_strings(const json& req) {
  auto it = req.find("stop");
  if (it == req.end() || it->is_null()) return {};
  if (it->is_string()) return {it->get<std::string>()};
  if (!it->is_array()) bad("stop", fmt::format("'stop' must be a string or a list of strings, got {}", kind(*it)));
  if (it->size() > 4) bad("stop", fmt::format("'stop' holds at most 4 strings, got {}", it->size()));
  std::vector<std::string> out;
  for (const auto& s : *it) {
    if (!s.is_string()) bad("stop", fmt::format("'stop' must hold strings, got {}", kind(s)));
    out.push_back(s.get<std::string>());
  }
  return out;
}

// Fields whose non-default values would change the output in ways this server does not implement.
void reject_unsupported(const json& req, bool chat) {
  auto set = [&](const char* key) {
    auto it = req.find(key);
    return it != req.end() && !it->is_null() && !(it->is_boolean() && !it->get<bool>()) &&
           !((it->is_array() || it->is_object()) && it->empty());
  };
  for (const char* key : {"frequency_penalty", "presence_penalty"})
    if (set(key) && !(req[key].is_number() && req[key].get<double>() == 0))
      bad(key, fmt::format("'{}' is not supported (the sampler has no additive penalties); use 'repetition_penalty' "
                           "(multiplicative, e.g. 1.1)",
                           key));
  for (const char* key : {"suffix", "logit_bias", "tools", "functions", "tool_choice", "function_call", "response_format"})
    if (set(key)) bad(key, fmt::format("'{}' is not supported by this server", key));
  // Completions' top-k is `logprobs` itself; chat has no echo.
  if (const char* key = chat ? "echo" : "top_logprobs"; set(key))
    bad(key, fmt::format("'{}' is not a parameter of {}", key, chat ? "/v1/chat/completions" : "/v1/completions (use 'logprobs': N)"));
  if (auto b = get_int(req, "best_of", 1, 1 << 20); b && *b != 1) bad("best_of", fmt::format("'best_of' must be 1, got {}", *b));
}

}  // namespace

json error_json(const std::string& message, const std::string& type, const std::string& param) {
  return {{"error", {{"message", message}, {"type", type}, {"param", param.empty() ? json(nullptr) : json(param)}, {"code", nullptr}}}};
}

CompletionRequest parse_completion_request(const std::string& body, bool chat, const ApiContext& ctx) {
  json req;
  try {
    req = json::parse(body);
  } catch (const json::parse_error& e) {
    // nlohmann rejects invalid UTF-8 in strings here too ("ill-formed UTF-8 byte").
    throw ApiError(400, fmt::format("the request body is not valid JSON: {}", e.what()));
  }
  if (!req.is_object()) throw ApiError(400, fmt::format("the request body must be a JSON object, got {}", kind(req)));
  if (req.contains("model") && !req["model"].is_string()) bad("model", "'model' must be a string");
  reject_unsupported(req, chat);

  CompletionRequest r;
  r.chat = chat;
  r.stream = get_bool(req, "stream", false);
  if (auto it = req.find("stream_options"); it != req.end() && !it->is_null()) {
    if (!it->is_object()) bad("stream_options", "'stream_options' must be an object");
    r.include_usage = get_bool(*it, "include_usage", false);
  }
  r.n = get_int(req, "n", 1, kMaxChoices).value_or(1);
  if (chat) {
    const bool logprobs = get_bool(req, "logprobs", false);
    const std::optional<int64_t> top = get_int(req, "top_logprobs", 0, kMaxLogprobs);
    if (top && !logprobs) bad("top_logprobs", "'top_logprobs' requires 'logprobs': true");
    if (logprobs) r.logprobs = top.value_or(0);
  } else {
    r.echo = get_bool(req, "echo", false);
    r.logprobs = get_int(req, "logprobs", 0, kMaxLogprobs).value_or(-1);
  }
  if (r.stream && r.logprobs >= 0)
    bad("logprobs", "'logprobs' is not supported with 'stream': true (ask without streaming for log-probabilities)");
  GenerationParams& p = r.params;
  p.prompt = chat ? chat_prompt(req, ctx) : completion_prompt(req, ctx, &r.prompt_text);
  if (!r.echo) r.prompt_text.clear();
  const int64_t n_prompt = static_cast<int64_t>(p.prompt.size());
  const char* prompt_param = chat ? "messages" : "prompt";
  if (n_prompt == 0) bad(prompt_param, fmt::format("'{}' is empty (no tokens to continue)", prompt_param));
  if (n_prompt > ctx.n_ctx)
    bad(prompt_param, fmt::format("the prompt has {} tokens but the context holds {} (--ctx); shorten it", n_prompt, ctx.n_ctx));
  // Completions take max_tokens 0: the prompt alone (with echo and logprobs, its log-probabilities:
  // what lm-evaluation-harness sends to score a text).
  std::optional<int64_t> max_tokens = get_int(req, "max_tokens", chat ? 1 : 0, std::numeric_limits<int32_t>::max());
  if (chat && !max_tokens) max_tokens = get_int(req, "max_completion_tokens", 1, std::numeric_limits<int32_t>::max());
  // OpenAI's defaults: 16 for completions, the rest of the context for chat. Either is clamped to
  // the context (finish_reason "length" when it runs out).
  p.max_tokens = max_tokens.value_or(chat ? ctx.n_ctx - n_prompt + 1 : 16);
  p.sampling.temperature = static_cast<float>(get_number(req, "temperature", 1.0, 0.0, 2.0));
  p.sampling.top_p = static_cast<float>(get_number(req, "top_p", 1.0, 0.0, 1.0, /*lo_open=*/true));
  p.sampling.top_k = get_int(req, "top_k", 0, std::numeric_limits<int32_t>::max()).value_or(0);
  p.sampling.repetition_penalty = static_cast<float>(get_number(req, "repetition_penalty", 1.0, 0.0, 100.0, true));
  if (auto seed = get_int(req, "seed", std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max()))
    p.sampling.seed = static_cast<uint64_t>(*seed);
  else
    p.sampling.seed = (static_cast<uint64_t>(std::random_device{}()) << 32) ^ std::random_device{}();
  p.stop = stop_strings(req);
  p.ignore_eos = get_bool(req, "ignore_eos", false);
  p.logprobs = r.logprobs;
  p.prompt_logprobs = r.echo && r.logprobs >= 0;
  return r;
}

uint64_t choice_seed(uint64_t seed, int64_t index) {
  if (index == 0) return seed;
  // splitmix64 of the seed stepped by the choice: well-mixed, distinct streams per choice.
  uint64_t z = seed + 0x9E3779B97F4A7C15ull * static_cast<uint64_t>(index);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

namespace {
json usage(const CompletionResult& r) {
  return {{"prompt_tokens", r.prompt_tokens},
          {"completion_tokens", r.completion_tokens},
          {"total_tokens", r.prompt_tokens + r.completion_tokens}};
}
json base(const CompletionResult& r, const char* object) {
  return {{"id", r.id}, {"object", object}, {"created", r.created}, {"model", r.model}};
}
}  // namespace

json completion_response(const CompletionResult& r, bool chat) {
  json j = base(r, chat ? "chat.completion" : "text_completion");
  j["choices"] = json::array();
  for (size_t i = 0; i < r.choices.size(); ++i) {
    const ChoiceResult& c = r.choices[i];
    json choice = {{"index", i}, {"logprobs", c.logprobs}, {"finish_reason", c.finish_reason}};
    if (chat) choice["message"] = {{"role", "assistant"}, {"content", c.text}};
    else choice["text"] = c.text;
    j["choices"].push_back(std::move(choice));
  }
  j["usage"] = usage(r);
  return j;
}

json stream_chunk(const CompletionResult& r, bool chat, int64_t index, const std::string& delta, bool first,
                  const std::optional<std::string>& finish_reason) {
  json j = base(r, chat ? "chat.completion.chunk" : "text_completion");
  json choice = {{"index", index}, {"logprobs", nullptr}, {"finish_reason", finish_reason ? json(*finish_reason) : json(nullptr)}};
  if (chat) {
    json d = json::object();
    if (first) d["role"] = "assistant";
    if (!delta.empty() || first) d["content"] = delta;
    choice["delta"] = d;
  } else {
    choice["text"] = delta;
  }
  j["choices"] = json::array({choice});
  return j;
}

json usage_chunk(const CompletionResult& r, bool chat) {
  json j = base(r, chat ? "chat.completion.chunk" : "text_completion");
  j["choices"] = json::array();
  j["usage"] = usage(r);
  return j;
}

// ---------------------------------------------------------------- log-probabilities

int64_t utf8_chars(const std::string& s) {
  int64_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

namespace {

constexpr size_t kTextContext = 4;  // tokens decoded before a token to find its text (as TextStream)
const char kReplacement[] = "\xEF\xBF\xBD";  // U+FFFD: the decoder's stand-in for an incomplete character

// A decoded text without its trailing U+FFFDs (a character whose remaining bytes come later).
std::string without_trailing_replacements(std::string s) {
  while (s.size() >= 3 && s.compare(s.size() - 3, 3, kReplacement) == 0) s.resize(s.size() - 3);
  return s;
}

// The token's raw bytes when its vocabulary entry spells them: byte-level BPE's byte alphabet, or
// SentencePiece's <0xNN> byte fallback.
std::optional<std::string> raw_bytes(const Tokenizer& tok, int64_t token) {
  std::optional<std::string> piece = tok.id_to_token(token);
  if (!piece || piece->empty()) return std::nullopt;
  const std::string& p = *piece;
  if (p.size() == 6 && p.compare(0, 3, "<0x") == 0 && p[5] == '>' && std::isxdigit(static_cast<unsigned char>(p[3])) &&
      std::isxdigit(static_cast<unsigned char>(p[4])))
    return std::string(1, static_cast<char>(std::stoi(p.substr(3, 2), nullptr, 16)));
  if (!unicode::is_valid_utf8(p)) return std::nullopt;
  std::string out;
  for (size_t i = 0; i < p.size();) {
    const int b = unicode::code_point_to_byte(unicode::next_code_point(p, i));
    if (b < 0) return std::nullopt;
    out.push_back(static_cast<char>(b));
  }
  return out;
}

// Texts of tokens after one context (its decoded text computed once for all the alternatives).
class TokenTexts {
 public:
  TokenTexts(const Tokenizer& tok, const std::vector<int64_t>& all, size_t at) : tok_(tok) {
    ids_.assign(all.begin() + static_cast<std::ptrdiff_t>(at - std::min(at, kTextContext)),
                all.begin() + static_cast<std::ptrdiff_t>(at));
    before_ = without_trailing_replacements(tok_.decode(ids_, /*skip_special_tokens=*/true));
  }
  TokenText operator()(int64_t token) {
    ids_.push_back(token);
    const std::string after = without_trailing_replacements(tok_.decode(ids_, /*skip_special_tokens=*/true));
    ids_.pop_back();
    size_t common = 0;
    while (common < before_.size() && common < after.size() && before_[common] == after[common]) ++common;
    // Back to a character boundary: two different characters may share their leading bytes.
    while (common > 0 && common < after.size() && (static_cast<unsigned char>(after[common]) & 0xC0) == 0x80) --common;
    TokenText t;
    t.text = after.substr(common);
    t.display = t.text;
    if (t.text.empty()) {
      const std::string named = tok_.decode({token}, /*skip_special_tokens=*/false);
      if (tok_.decode({token}, /*skip_special_tokens=*/true).empty() && !named.empty()) {
        t.display = named;  // a special token: shown by name, no text
      } else if (auto bytes = raw_bytes(tok_, token)) {
        t.display = "bytes:";  // part of a character, as OpenAI shows it
        for (unsigned char c : *bytes) t.display += fmt::format("\\x{:02x}", c);
      }
    }
    return t;
  }

 private:
  const Tokenizer& tok_;
  std::vector<int64_t> ids_;
  std::string before_;
};

// The `bytes` of a token in the chat format: its text's UTF-8, or its raw bytes when it has no text.
json token_bytes(const Tokenizer& tok, int64_t token, const TokenText& t) {
  std::string b = t.text.empty() && t.display.rfind("bytes:", 0) == 0 ? raw_bytes(tok, token).value_or("") : t.display;
  json out = json::array();
  for (unsigned char c : b) out.push_back(static_cast<int>(c));
  return out;
}

json logprob_value(float v) { return std::isnan(v) ? json(nullptr) : json(v); }

// How many of the sequence's tokens belong to the reply (see completion_logprobs in api.h), with
// `text_of(i)` the text of token i.
template <typename F>
size_t reply_tokens(const Sequence& seq, int64_t reply_chars, F&& text_of) {
  size_t n = seq.tokens().size();
  if (seq.ended_by_eos() && n > 0) --n;
  if (!seq.stopped_by_string()) return n;
  int64_t at = 0;
  for (size_t i = 0; i < n; ++i) {
    if (at >= reply_chars) return i;
    at += utf8_chars(text_of(i).text);
  }
  return n;
}

}  // namespace

TokenText token_text(const Tokenizer& tok, const std::vector<int64_t>& context, int64_t token) {
  std::vector<int64_t> all = context;
  all.push_back(token);
  return TokenTexts(tok, all, context.size())(token);
}

json completion_logprobs(const Tokenizer& tok, const std::vector<int64_t>& prompt,
                         const std::vector<TokenLogprob>* prompt_logprobs, const Sequence& seq, int64_t prompt_chars,
                         int64_t reply_chars) {
  std::vector<int64_t> all = prompt;
  all.insert(all.end(), seq.tokens().begin(), seq.tokens().end());
  json tokens = json::array(), token_logprobs = json::array(), top_logprobs = json::array(), text_offset = json::array();
  int64_t offset = 0;
  auto add = [&](size_t at, const TokenLogprob& e) {
    TokenTexts texts(tok, all, at);
    const TokenText t = texts(all[at]);
    tokens.push_back(t.display);
    token_logprobs.push_back(logprob_value(e.logprob));
    text_offset.push_back(offset);
    offset += utf8_chars(t.text);
    if (std::isnan(e.logprob)) {
      top_logprobs.push_back(nullptr);
      return;
    }
    json top = json::object();  // a token's text once: the more likely entry wins
    for (const auto& [id, lp] : e.top) {
      const std::string key = id == all[at] ? t.display : texts(id).display;
      if (!top.contains(key)) top[key] = lp;
    }
    if (!top.contains(t.display)) top[t.display] = e.logprob;  // the chosen token is always listed
    top_logprobs.push_back(std::move(top));
  };
  if (prompt_logprobs != nullptr)
    for (size_t i = 0; i < prompt_logprobs->size() && i < prompt.size(); ++i) add(i, (*prompt_logprobs)[i]);
  offset = prompt_chars;
  const auto& lps = seq.logprobs();
  const size_t n = reply_tokens(seq, reply_chars, [&](size_t i) { return TokenTexts(tok, all, prompt.size() + i)(all[prompt.size() + i]); });
  for (size_t i = 0; i < n && i < lps.size(); ++i) add(prompt.size() + i, lps[i]);
  return {{"tokens", tokens}, {"token_logprobs", token_logprobs}, {"top_logprobs", top_logprobs}, {"text_offset", text_offset}};
}

json chat_logprobs(const Tokenizer& tok, const std::vector<int64_t>& prompt, const Sequence& seq, int64_t reply_chars) {
  std::vector<int64_t> all = prompt;
  all.insert(all.end(), seq.tokens().begin(), seq.tokens().end());
  json content = json::array();
  const auto& lps = seq.logprobs();
  const size_t n = reply_tokens(seq, reply_chars, [&](size_t i) { return TokenTexts(tok, all, prompt.size() + i)(all[prompt.size() + i]); });
  for (size_t i = 0; i < n && i < lps.size(); ++i) {
    const size_t at = prompt.size() + i;
    TokenTexts texts(tok, all, at);
    const TokenText t = texts(all[at]);
    json top = json::array();
    for (const auto& [id, lp] : lps[i].top) {
      const TokenText a = id == all[at] ? t : texts(id);
      top.push_back({{"token", a.display}, {"logprob", lp}, {"bytes", token_bytes(tok, id, a)}});
    }
    content.push_back({{"token", t.display},
                       {"logprob", logprob_value(lps[i].logprob)},
                       {"bytes", token_bytes(tok, all[at], t)},
                       {"top_logprobs", top}});
  }
  return {{"content", content}, {"refusal", nullptr}};
}

}  // namespace rad::serve
