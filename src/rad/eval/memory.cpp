#include "rad/eval/memory.h"

namespace rad {

CacheCost teacher_cache_cost(const ModelConfig& c, int64_t kv_dtype_bytes) {
  return {c.kv_cache_bytes_per_token(kv_dtype_bytes), 0};
}

CacheCost hybrid_cache_cost(const HybridConfig& h, int64_t kv_dtype_bytes) {
  return {h.kv_bytes_per_token(kv_dtype_bytes), h.ssm_state_bytes()};
}

std::optional<int64_t> break_even_length(const CacheCost& a, const CacheCost& b) {
  if (a.fixed <= b.fixed && a.per_token <= b.per_token) return 0;
  if (a.per_token >= b.per_token) return std::nullopt;  // a's fixed part is larger and never caught up
  // a.fixed + a.pt * L <= b.fixed + b.pt * L  <=>  L >= (a.fixed - b.fixed) / (b.pt - a.pt)
  int64_t num = a.fixed - b.fixed, den = b.per_token - a.per_token;
  return (num + den - 1) / den;
}

}  // namespace rad
