// What must be the same on every data-parallel rank of a training loop, as JSON: the batch shape,
// optimizer hygiene, seed, data mix and a fingerprint of the corpus. Ranks compare it with rank 0's
// (parallel::ProcessGroup::check_same) before the first step, so a rank started with other arguments or
// another corpus is refused by name instead of silently training something else.
#pragma once

#include <nlohmann/json.hpp>

#include "rad/train/data.h"
#include "rad/train/loop.h"

namespace rad {

// The fields of TrainingLoopOptions that change what is computed (not paths, cadences or stop_after).
nlohmann::json training_loop_settings(const TrainingLoopOptions& options, const TokenCorpus& corpus);

}  // namespace rad
