#include "rad/model/generate.h"

#include <algorithm>
#include <chrono>

#include "rad/core/error.h"

namespace rad {

GenerateResult generate_greedy(CausalLM& model, const std::vector<int64_t>& prompt, const GenerateOptions& options) {
  RAD_CHECK(!prompt.empty(), "generate: the prompt is empty");
  at::NoGradGuard no_grad;
  GenerateResult result;
  const auto& eos = model->config().eos_token_ids;
  DecodeCache cache = model->new_cache();
  auto clock = std::chrono::steady_clock::now;
  auto t0 = clock();
  at::Tensor ids = at::tensor(prompt, at::kLong).unsqueeze(0);
  at::Tensor logits = model->forward(ids, &cache);
  auto t1 = clock();
  for (int64_t i = 0; i < options.max_new_tokens; ++i) {
    int64_t next = logits.select(1, logits.size(1) - 1).argmax(-1).item<int64_t>();
    result.tokens.push_back(next);
    if (options.on_token) options.on_token(next);
    if (options.stop_at_eos && std::find(eos.begin(), eos.end(), next) != eos.end()) break;
    if (i + 1 == options.max_new_tokens) break;
    logits = model->forward(at::tensor({next}, at::kLong).unsqueeze(0), &cache);
  }
  auto t2 = clock();
  result.cache_bytes = cache.bytes();
  result.prefill_seconds = std::chrono::duration<double>(t1 - t0).count();
  result.decode_seconds = std::chrono::duration<double>(t2 - t1).count();
  return result;
}

}  // namespace rad
