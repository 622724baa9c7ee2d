#!/usr/bin/env bash
# Continuous batching (issue 17): aggregate decode tokens/s of B = 1, 4, 16 concurrent sessions,
# one runtime::BatchDecoder step for all of them against one Session::step per session, on the
# default teacher and the hybrids of `radistill run` (runs/main). Both modes run side by side in
# each repetition (bench/bench_batch.cpp); each model's line is preceded by `uptime`, so the load
# beside every figure is on record. OPENBLAS_CORETYPE is left as the machine sets it (the runtime
# does not use BLAS anyway).
# Usage: bench/batch_decode.sh [build dir] [threads] [prompt lengths] [gen] [reps] [models...]
set -euo pipefail
build=${1:-build}
threads=${2:-1}
prompts=${3:-128,960}
gen=${4:-64}
reps=${5:-5}
shift $(( $# < 5 ? $# : 5 ))
models=("$@")
[ ${#models[@]} -gt 0 ] || models=(models/default-teacher runs/main/models/hybrid runs/main/models/shrunk)
for model in "${models[@]}"; do
  echo "# $(date -u +%FT%TZ) uptime:$(uptime | sed 's/.*load average/ load average/') model=$model"
  "$build/bench_batch" "$model" --batch 1,4,16 --prompt "$prompts" --gen "$gen" --reps "$reps" --threads "$threads"
done
