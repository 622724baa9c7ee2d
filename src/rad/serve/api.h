// The OpenAI-style request and response bodies of /v1/completions and /v1/chat/completions:
// parsing and validating a request into GenerationParams (every bad field is an ApiError naming
// it), and the response / stream-chunk JSON clients expect.
//
// Parameters: prompt (string, list of token ids, or a one-element list of either), messages,
// max_tokens (chat also max_completion_tokens), temperature (default 1, as OpenAI; 0 = greedy),
// top_p, top_k, seed (default: a random one), stop (string or up to 4 strings), stream,
// stream_options.include_usage, n (1 to kMaxChoices independent samples; choice i > 0 samples with
// a seed derived from `seed` and i), log-probabilities (completions: logprobs 0..20 and echo, in
// OpenAI's legacy format; chat: logprobs true + top_logprobs 0..20, in the chat format; not with
// stream), and two extensions llama.cpp and vLLM also accept:
// repetition_penalty (multiplicative, > 1 discourages repeats, over the last 64 tokens) and
// ignore_eos. OpenAI's frequency_penalty / presence_penalty are additive per-count penalties the
// sampler does not implement; rather than approximate them silently, a non-zero value is an error
// that points to repetition_penalty. The `model` field is accepted whatever it names: the server
// serves one model.
#pragma once

#include <nlohmann/json.hpp>

#include <optional>
#include <stdexcept>
#include <string>

#include "rad/serve/chat_template.h"
#include "rad/serve/scheduler.h"
#include "rad/tokenizer/tokenizer.h"

namespace rad::serve {

// An error answered as HTTP `status` with {"error": {"message", "type", "param", "code"}}.
struct ApiError : std::runtime_error {
  ApiError(int status, const std::string& message, std::string param = "", std::string type = "invalid_request_error")
      : std::runtime_error(message), status(status), type(std::move(type)), param(std::move(param)) {}
  int status;
  std::string type, param;
};

nlohmann::json error_json(const std::string& message, const std::string& type, const std::string& param);

struct ApiContext {
  const Tokenizer& tokenizer;
  const std::optional<ChatTemplate>& chat_template;
  std::string model_dir;
  int64_t n_vocab = 0;
  int64_t n_ctx = 0;
  bool add_special_tokens = true;  // string prompts of /v1/completions (rad::encode_prompt)
};

constexpr int64_t kMaxChoices = 16;  // the largest `n`
constexpr int64_t kMaxLogprobs = 20; // the most alternatives per token (`logprobs`, `top_logprobs`)

struct CompletionRequest {
  bool chat = false;
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage: a last chunk with the usage
  int64_t n = 1;               // choices
  bool echo = false;           // completions: the prompt's text (and log-probabilities) before the reply
  std::string prompt_text;     // echo: the prompt as sent (a string) or decoded (token ids)
  // Log-probabilities asked for: -1 none; else this many alternatives per token (completions'
  // `logprobs`, chat's `top_logprobs` with `logprobs: true`).
  int64_t logprobs = -1;
  GenerationParams params;     // choice 0's; params.logprobs / prompt_logprobs set from the above
};

// Throws ApiError (400) for malformed JSON, wrong types, missing or unsupported fields, token ids
// outside the vocabulary, a prompt longer than the context, a model without a chat template.
CompletionRequest parse_completion_request(const std::string& body, bool chat, const ApiContext& ctx);

// The seed of choice `index` of a request with `seed`: the seed itself for choice 0 (so n = 1 is
// unchanged), a mix of both for the others (independent samples, the same for the same request).
uint64_t choice_seed(uint64_t seed, int64_t index);

struct ChoiceResult {
  std::string text, finish_reason;
  nlohmann::json logprobs;  // null unless asked for
};

struct CompletionResult {
  std::string id, model;
  int64_t created = 0, prompt_tokens = 0, completion_tokens = 0;
  std::vector<ChoiceResult> choices;
};

nlohmann::json completion_response(const CompletionResult& r, bool chat);
// One server-sent event's data for choice `index`. `first` adds the assistant role (chat),
// `finish_reason` is set on the choice's last chunk only.
nlohmann::json stream_chunk(const CompletionResult& r, bool chat, int64_t index, const std::string& delta, bool first,
                            const std::optional<std::string>& finish_reason);
nlohmann::json usage_chunk(const CompletionResult& r, bool chat);  // choices [] + usage

// A token's text where it stands, after `context` (the few tokens before it): `text` is its share
// of the decoded reply (special tokens, and a token that ends inside a multi-byte UTF-8 character,
// have none; the token that completes the character carries all of it), `display` is what the
// logprobs show (special tokens by name, else `text`).
struct TokenText {
  std::string display, text;
};
TokenText token_text(const Tokenizer& tok, const std::vector<int64_t>& context, int64_t token);

// The `logprobs` object of a finished choice. Completions (OpenAI's legacy format):
// {tokens, token_logprobs, top_logprobs, text_offset} over the echoed prompt's tokens (when
// `prompt` is given: null log-probability and alternatives for the first) then the reply's;
// top_logprobs maps each alternative's text to its log-probability, plus the chosen token's (so
// up to logprobs + 1 entries, as OpenAI documents); text_offset counts Unicode code points of the
// choice's text, the reply's tokens from `prompt_chars` on (the length of the echoed prompt text).
// Chat: {content: [{token, logprob, bytes, top_logprobs: [{token, logprob, bytes}]}], refusal: null}.
// The reply's tokens are the sequence's, less an end-of-sequence token that ended it and, when a
// stop string cut the text, those starting at or after the cut (`reply_chars`: the reply text's
// length in code points).
nlohmann::json completion_logprobs(const Tokenizer& tok, const std::vector<int64_t>& prompt,
                                   const std::vector<TokenLogprob>* prompt_logprobs, const Sequence& seq,
                                   int64_t prompt_chars, int64_t reply_chars);
nlohmann::json chat_logprobs(const Tokenizer& tok, const std::vector<int64_t>& prompt, const Sequence& seq,
                             int64_t reply_chars);
int64_t utf8_chars(const std::string& s);  // code points

}  // namespace rad::serve
