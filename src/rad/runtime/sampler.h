// Token sampling for the runtime, in the order users know from llama.cpp / HF: repetition
// penalty over the recent tokens, then greedy (temperature 0) or top-k -> temperature -> top-p ->
// a draw from a seeded generator. No allocation per token (buffers sized once).
#pragma once

#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <vector>

namespace rad::runtime {

class Session;

struct SamplingOptions {
  float temperature = 0.0f;        // <= 0: greedy (argmax; ties -> lowest id)
  int64_t top_k = 0;               // 0: all tokens
  float top_p = 1.0f;              // nucleus: smallest set with probability >= top_p
  float repetition_penalty = 1.0f; // > 1 discourages tokens seen in the last repeat_last_n tokens
  int64_t repeat_last_n = 64;
  uint64_t seed = 0;
  void validate() const;           // throws rad::Error naming the bad option
};

class Sampler {
 public:
  Sampler(const SamplingOptions& options, int64_t n_vocab);
  // Picks the next token from `logits` [n_vocab] (modified in place by the penalty); `history` is
  // the sequence so far (prompt + generated).
  int64_t sample(float* logits, const std::vector<int64_t>& history);

 private:
  SamplingOptions o_;
  int64_t n_vocab_;
  std::mt19937_64 rng_;
  std::vector<std::pair<float, int64_t>> cand_;
  std::vector<uint8_t> seen_;
};

// Log-probabilities as the server reports them: log_softmax of the model's raw logits (before the
// repetition penalty, temperature, top-k and top-p), in float32: out[i] = logits[i] - max -
// log(sum_j exp(logits[j] - max)), the sum accumulated in double. `out` may equal `logits`.
void log_softmax(const float* logits, int64_t n, float* out);

// The k largest of `values` [n] as (index, value), largest first, ties to the lower index (as the
// greedy sampler's argmax). k is clamped to n; `out` is cleared first.
void top_k(const float* values, int64_t n, int64_t k, std::vector<std::pair<int64_t, float>>& out);

struct GenerateOptions {
  int64_t max_new_tokens = 32;
  bool stop_at_eos = true;
  std::vector<int64_t> eos_token_ids;
  SamplingOptions sampling;
  // Stop strings: `decode` turns the new tokens into text; generation stops once the text
  // contains one of `stop_strings` (the caller trims the text at it).
  std::vector<std::string> stop_strings;
  std::function<std::string(const std::vector<int64_t>&)> decode;
  std::function<void(int64_t token)> on_token;  // streaming
};

struct GenerateResult {
  std::vector<int64_t> tokens;  // new tokens only
  std::string stop_reason;      // "length", "eos" or "stop_string"
  int64_t cache_bytes = 0;      // cache bytes in use at the end
  double prefill_seconds = 0, decode_seconds = 0;
};

// Prefill of `prompt` (continuing whatever `session` holds) then one step per new token.
GenerateResult generate(Session& session, const std::vector<int64_t>& prompt, const GenerateOptions& options);

}  // namespace rad::runtime
