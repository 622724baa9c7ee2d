#!/usr/bin/env bash
# Runtime (src/rad/runtime, no libtorch) against the libtorch model: prompt-processing and decode
# tokens/s with `radistill bench`, on the default teacher, a hybrid made from it with `radistill
# convert` (3 kept heads: layer 4 head 5 since the 8-head default teacher; head 10 for the recorded 72-head interim one; d_state = the head dim: 12 now, 16 for the recorded interim teacher) and the pure SSM (no kept
# head). Prints one JSON array per run on stdout, each preceded by a line with `uptime`, so that the
# load beside every figure is on record. OPENBLAS_CORETYPE is left as the machine sets it.
# Usage: [REPS=n] bench/runtime.sh [build dir] [threads] [prompt lengths] [gen]   (best of REPS runs)
set -euo pipefail
build=${1:-build}
threads=${2:-2}
prompts=${3:-128,4096}
gen=${4:-128}
reps=${REPS:-1}
teacher=${TEACHER:-models/default-teacher}
work=${WORK:-$(mktemp -d /tmp/radistill-bench-runtime.XXXXXX)}
cli="$build/radistill -q --threads $threads"

echo '{"kept_heads": [[0, 3], [2, 7], [4, 5]]}' >"$work/plan3.json"
echo '{"kept_heads": []}' >"$work/plan0.json"
[ -d "$work/hybrid" ] || $cli convert "$teacher" --plan "$work/plan3.json" --out "$work/hybrid" >&2
[ -d "$work/ssm" ] || $cli convert "$teacher" --plan "$work/plan0.json" --out "$work/ssm" >&2

for model in "$teacher" "$work/hybrid" "$work/ssm"; do
  for engine in runtime torch; do
    echo "# $(date -u +%FT%TZ) uptime:$(uptime | sed 's/.*load average/ load average/') model=$model engine=$engine"
    $cli bench "$model" --engine "$engine" --prompt "$prompts" --gen "$gen" --reps "$reps" --json
  done
done
