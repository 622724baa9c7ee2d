// Configures libtorch for speed on CPU and reports what it is running on.
//
// Why this matters (docs/DESIGN.md section 9): libtorch 1.13 defaults to half the cores; a reference
// BLAS instead of OpenBLAS is ~50x slower; glibc malloc instead of tcmalloc makes training steps
// 6-7x slower. `radistill env` prints all of it so a user can see why a run is slow.
#pragma once

#include <nlohmann/json.hpp>

namespace rad {

// Number of CPUs this process may run on (sched_getaffinity), at least 1.
int available_cores();

// Sets libtorch's intra-op threads (and OpenBLAS's, when loaded) to `threads`
// (0 = available_cores()). Warns when the BLAS is not OpenBLAS or the allocator is not tcmalloc.
void configure_torch(int threads = 0, bool warn = true);

// Whether the CPU has native bf16 matrix instructions (avx512_bf16 or amx_bf16 in /proc/cpuinfo).
// Without them libtorch 1.13's bf16 matmul falls back to a slow kernel: measured 48 against 906
// tokens/s in float32 for a distillation step on an AVX2-only Zen core, so bf16 autocast is only
// worth it where this is true.
bool cpu_has_native_bf16();

// libtorch version, BLAS backend and its threads, libtorch threads, allocator, CPU capability.
nlohmann::json runtime_environment();

}  // namespace rad
