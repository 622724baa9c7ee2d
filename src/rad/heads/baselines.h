// Head plans of the baselines every evaluation shows beside the retrieval-aware hybrid
// (docs/DESIGN.md section 6): the same head budget drawn at random, and layer-wise hybrids that keep whole
// attention layers ("The Mamba in the Llama", MOHAWK).
#pragma once

#include <cstdint>

#include "rad/heads/head_plan.h"

namespace rad {

// k query heads drawn uniformly without replacement over all (layer, head) with `seed`.
HeadPlan random_heads_plan(const ModelConfig& config, int64_t k, uint64_t seed);

// Whole attention layers, n = round(fraction * n_layer) of them (the count whose kept fraction is
// closest to the target; at least 1), evenly spaced: layer floor((i + 0.5) * L / n) for i < n (the
// centres of n equal blocks). The selector records the target and the fraction actually kept.
HeadPlan layerwise_plan(const ModelConfig& config, double fraction);

// The layer-wise plan whose KV cache is nearest `plan`'s: `plan` caches one K/V pair per distinct
// kept KV group of each layer (grouped-query attention), a whole layer n_head_kv of them, so it keeps
// n = round(groups / n_head_kv) layers (at least 1), evenly spaced as above.
HeadPlan layerwise_plan_same_cache(const ModelConfig& config, const HeadPlan& plan);

}  // namespace rad
