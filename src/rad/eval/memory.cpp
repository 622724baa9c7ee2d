#include "rad/eval/memory.h"

#include <algorithm>

namespace rad {

CacheCost teacher_cache_cost(const ModelConfig& c, int64_t kv_dtype_bytes) {
  return {c.kv_cache_bytes_per_token(kv_dtype_bytes), 0, c.sliding_window};
}

CacheCost hybrid_cache_cost(const HybridConfig& h, int64_t kv_dtype_bytes) {
  return {h.kv_bytes_per_token(kv_dtype_bytes), h.ssm_state_bytes(kv_dtype_bytes), h.base.sliding_window};
}

namespace {

// First L >= 0 from which slope_a * L + fixed_a <= slope_b * L + fixed_b holds for good.
std::optional<int64_t> linear_break_even(int64_t slope_a, int64_t fixed_a, int64_t slope_b, int64_t fixed_b) {
  if (fixed_a <= fixed_b && slope_a <= slope_b) return 0;
  if (slope_a >= slope_b) return std::nullopt;  // a's fixed part is larger and never caught up
  // fixed_a + slope_a * L <= fixed_b + slope_b * L  <=>  L >= (fixed_a - fixed_b) / (slope_b - slope_a)
  int64_t num = fixed_a - fixed_b, den = slope_b - slope_a;
  return (num + den - 1) / den;
}

}  // namespace

std::optional<int64_t> break_even_length(const CacheCost& a, const CacheCost& b) {
  if (a.window == 0 && b.window == 0) return linear_break_even(a.per_token, a.fixed, b.per_token, b.fixed);
  // Piecewise linear: from the longest window on, both are linear again (a windowed one constant).
  const int64_t end = std::max(a.window, b.window);
  auto tail_slope = [](const CacheCost& c) { return c.window > 0 ? 0 : c.per_token; };
  auto tail = linear_break_even(tail_slope(a), a.bytes(end) - tail_slope(a) * end, tail_slope(b),
                                b.bytes(end) - tail_slope(b) * end);
  if (!tail) return std::nullopt;
  // Walk down from where the tail holds while a <= b still holds.
  int64_t L = std::max(*tail, end);
  while (L > 0 && a.bytes(L - 1) <= b.bytes(L - 1)) --L;
  return L;
}

}  // namespace rad
