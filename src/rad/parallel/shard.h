// Deterministic split of a global batch across data-parallel ranks.
#pragma once

#include <cstdint>
#include <string>

namespace rad::parallel {

// Rows [begin, begin + count) of a global batch.
struct RowShard {
  int64_t begin = 0;
  int64_t count = 0;
};

// The contiguous block of global_batch / world_size rows that `rank` trains on, so the union over
// ranks is exactly the global batch, in order. A global batch that world_size does not divide is an
// error naming `flag` (the option that set it) and WORLD_SIZE.
RowShard shard_rows(int64_t global_batch, int rank, int world_size, const std::string& flag = "--batch");

}  // namespace rad::parallel
