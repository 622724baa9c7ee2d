// The OpenAI-style request and response bodies of /v1/completions and /v1/chat/completions:
// parsing and validating a request into GenerationParams (every bad field is an ApiError naming
// it), and the response / stream-chunk JSON clients expect.
//
// Parameters: prompt (string, list of token ids, or a one-element list of either), messages,
// max_tokens (chat also max_completion_tokens), temperature (default 1, as OpenAI; 0 = greedy),
// top_p, top_k, seed (default: a random one), stop (string or up to 4 strings), stream,
// stream_options.include_usage, n (1 only), and two extensions llama.cpp and vLLM also accept:
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
};

struct CompletionRequest {
  bool chat = false;
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage: a last chunk with the usage
  GenerationParams params;
};

// Throws ApiError (400) for malformed JSON, wrong types, missing or unsupported fields, token ids
// outside the vocabulary, a prompt longer than the context, a model without a chat template.
CompletionRequest parse_completion_request(const std::string& body, bool chat, const ApiContext& ctx);

struct CompletionResult {
  std::string id, model, text, finish_reason;
  int64_t created = 0, prompt_tokens = 0, completion_tokens = 0;
};

nlohmann::json completion_response(const CompletionResult& r, bool chat);
// One server-sent event's data. `first` adds the assistant role (chat), `finish_reason` is set on
// the last chunk only.
nlohmann::json stream_chunk(const CompletionResult& r, bool chat, const std::string& delta, bool first,
                            const std::optional<std::string>& finish_reason);
nlohmann::json usage_chunk(const CompletionResult& r, bool chat);  // choices [] + usage

}  // namespace rad::serve
