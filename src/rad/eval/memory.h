// Cache memory accounting (docs/DESIGN.md section 7): per sequence of length L,
//   cache(L) = b * [sum over layers of (distinct kept KV groups) * 2 * d_head * min(L, window)
//                   + sum over SSM heads of P * N (+ conv state)],
// everything counted at b bytes per element, as the paper does (its Llama-3.2-1B row: 10 kept heads
// at d_state 8 -> 0.8 / 5.7 / 11.0 MB at 128 / 2k / 4k tokens; tests/test_eval.cpp). A sliding-window
// model (Mistral) caps the KV part at its window.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "rad/model/config.h"
#include "rad/model/hybrid_config.h"

namespace rad {

struct CacheCost {
  int64_t per_token = 0;  // bytes per cached token
  int64_t fixed = 0;      // bytes independent of length (SSM and conv states)
  int64_t window = 0;     // sliding window: at most this many tokens cached (0: none)
  int64_t bytes(int64_t length) const {
    return per_token * (window > 0 && length > window ? window : length) + fixed;
  }
};

CacheCost teacher_cache_cost(const ModelConfig& config, int64_t kv_dtype_bytes);
CacheCost hybrid_cache_cost(const HybridConfig& config, int64_t kv_dtype_bytes);

// The context length from which `a` needs no more cache than `b` at every longer length (0 when a
// is never larger; nullopt when a needs more at long lengths).
std::optional<int64_t> break_even_length(const CacheCost& a, const CacheCost& b);

}  // namespace rad
