// Cache memory accounting (DESIGN section 7): per sequence of length L,
//   cache(L) = b * [sum over layers of (distinct kept KV groups) * 2 * d_head * L] + SSM states,
// with SSM states (and conv states) held in float32 whatever the KV dtype.
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
  int64_t bytes(int64_t length) const { return per_token * length + fixed; }
};

CacheCost teacher_cache_cost(const ModelConfig& config, int64_t kv_dtype_bytes);
CacheCost hybrid_cache_cost(const HybridConfig& config, int64_t kv_dtype_bytes);

// The context length from which `a` needs no more cache than `b` (0 when a is never larger;
// nullopt when a always needs more).
std::optional<int64_t> break_even_length(const CacheCost& a, const CacheCost& b);

}  // namespace rad
