#include "rad/heads/baselines.h"

#include <algorithm>
#include <cmath>
#include <random>
#include <set>

#include "rad/core/error.h"

namespace rad {

HeadPlan random_heads_plan(const ModelConfig& c, int64_t k, uint64_t seed) {
  RAD_CHECK(k >= 0 && k <= c.n_query_heads_total(), "random heads: k must be in [0, {}], got {}",
            c.n_query_heads_total(), k);
  std::vector<std::pair<int64_t, int64_t>> all;
  for (int64_t l = 0; l < c.n_layer; ++l)
    for (int64_t h = 0; h < c.n_head; ++h) all.push_back({l, h});
  std::mt19937_64 rng(seed);
  std::shuffle(all.begin(), all.end(), rng);
  HeadPlan p;
  p.kept_heads.assign(all.begin(), all.begin() + k);
  std::sort(p.kept_heads.begin(), p.kept_heads.end());
  p.selector = {{"kind", "random"}, {"k", k}, {"seed", seed}};
  return p;
}

HeadPlan layerwise_plan(const ModelConfig& c, double fraction) {
  RAD_CHECK(fraction > 0 && fraction <= 1, "layer-wise plan: fraction must be in (0, 1], got {}", fraction);
  int64_t n = std::clamp<int64_t>(std::llround(fraction * c.n_layer), 1, c.n_layer);
  HeadPlan p;
  std::vector<int64_t> layers;
  for (int64_t i = 0; i < n; ++i) layers.push_back(static_cast<int64_t>((i + 0.5) * c.n_layer / n));
  for (int64_t l : layers)
    for (int64_t h = 0; h < c.n_head; ++h) p.kept_heads.push_back({l, h});
  p.selector = {{"kind", "layerwise"}, {"fraction", fraction}, {"layers", layers},
                {"kept_fraction", static_cast<double>(n) / c.n_layer}};
  return p;
}

HeadPlan layerwise_plan_same_cache(const ModelConfig& c, const HeadPlan& plan) {
  std::set<std::pair<int64_t, int64_t>> groups;  // (layer, KV group) pairs the plan caches
  for (const auto& [l, h] : plan.kept_heads) groups.insert({l, h / c.n_group()});
  const int64_t n = std::clamp<int64_t>(
      std::llround(static_cast<double>(groups.size()) / static_cast<double>(c.n_head_kv)), 1, c.n_layer);
  HeadPlan p = layerwise_plan(c, static_cast<double>(n) / static_cast<double>(c.n_layer));
  p.selector["same_cache_as"] = {{"kept_heads", plan.size()}, {"kv_groups", groups.size()}};
  return p;
}

}  // namespace rad
