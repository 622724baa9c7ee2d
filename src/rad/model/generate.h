// Greedy generation with a decode cache: one prefill of the prompt, then one step per token.
#pragma once

#include <functional>
#include <vector>

#include "rad/model/causal_lm.h"

namespace rad {

struct GenerateOptions {
  int64_t max_new_tokens = 32;
  bool stop_at_eos = true;
  // Called with each new token as soon as it is chosen (for streaming output).
  std::function<void(int64_t token)> on_token;
};

struct GenerateResult {
  std::vector<int64_t> tokens;  // new tokens only
  int64_t cache_bytes = 0;      // bytes held by the decode cache at the end
  double prefill_seconds = 0;
  double decode_seconds = 0;
};

GenerateResult generate_greedy(CausalLM& model, const std::vector<int64_t>& prompt, const GenerateOptions& options);

}  // namespace rad
