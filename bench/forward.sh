#!/usr/bin/env bash
# Forward/decode throughput of a ~10M-parameter Llama config (T=256), fp32 and bf16.
# Usage: bench/forward.sh [build dir]   (prints JSON; the table in bench/RESULTS.md comes from it)
# OPENBLAS_CORETYPE is left as the machine sets it (docs/DESIGN.md section 9).
set -euo pipefail
build=${1:-build}
for b in 1 8; do
  "$build/bench_forward" --batch "$b" --iters $((b == 1 ? 10 : 4))
done
