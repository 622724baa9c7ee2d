#include "rad/parallel/shard.h"

#include "rad/core/error.h"

namespace rad::parallel {

RowShard shard_rows(int64_t global_batch, int rank, int world_size, const std::string& flag) {
  RAD_CHECK(world_size >= 1 && rank >= 0 && rank < world_size, "rank {} is not in [0, WORLD_SIZE {})", rank,
            world_size);
  RAD_CHECK(global_batch >= 1, "{} must be >= 1, got {}", flag, global_batch);
  RAD_CHECK(global_batch % world_size == 0,
            "{} {} (the global batch) is not divisible by WORLD_SIZE {}: every rank takes an equal share of it; "
            "use a multiple of {}",
            flag, global_batch, world_size, world_size);
  const int64_t per_rank = global_batch / world_size;
  return {rank * per_rank, per_rank};
}

}  // namespace rad::parallel
