#!/usr/bin/env bash
# Data-parallel scaling of `radistill distill` on one machine (issue 16): the same global batch
# (16 x 256 tokens, distill's default) and seed, run as
#   1 process x 1 thread, 2 processes x 1 thread (`radistill launch -n 2`, Gloo all-reduce over
#   loopback), and 1 process x 2 threads (libtorch's own intra-op parallelism),
# one after the other, on the default teacher and a hybrid converted from it (top-8 plan of the
# main run). Throughput is rank 0's metrics.jsonl tokens_per_s (global tokens: the batch is the
# global one), time-weighted over the logged windows after the first (warm-up) one of each stage.
# The machine must be otherwise idle: the 2-process and 2-thread rows need both cores.
#   bench/dp_scaling.sh [STEPS]   (timed steps per stage after 4 warm-up steps; default 12)
# Environment: RADISTILL (binary, default build/radistill).
set -euo pipefail
cd "$(dirname "$0")/.."
steps=${1:-12}
warm=4
bin=${RADISTILL:-build/radistill}
tmp=$(mktemp -d)
[ -n "${KEEP_TMP:-}" ] || trap 'rm -rf "$tmp"' EXIT
corpus=data/kjv.txt
[ -f "$corpus" ] || bash scripts/get_corpus.sh "$corpus"
echo '{"kept_heads": [[0,1],[0,3],[0,4],[2,2],[2,3],[3,0],[3,1],[3,3]]}' > "$tmp/plan.json"
"$bin" -q --threads 1 convert models/default-teacher --plan "$tmp/plan.json" --out "$tmp/student" >/dev/null
n=$((steps + warm))
common=(distill --teacher models/default-teacher --student "$tmp/student" --corpus "$corpus" --align-steps "$n"
        --kd-steps "$n" --batch 16 --seq 256 --seed 0 --log-every "$warm" --eval-every 100000 --save-every 100000
        --probe-examples 4)
rate() {  # rate METRICS STAGE: tokens/s over the windows after the first of STAGE
  /usr/bin/python3 - "$1" "$2" "$warm" <<'PY'
import json, sys
path, stage, warm = sys.argv[1], sys.argv[2], int(sys.argv[3])
rows = [json.loads(l) for l in open(path) if '"tokens_per_s"' in l]
rows = [r for r in rows if r["stage"] == stage][1:]
tokens = 16 * 256 * warm * len(rows)
secs = sum(16 * 256 * warm / r["tokens_per_s"] for r in rows)
print(f"{tokens / secs:.0f}")
PY
}
printf '| setup | align tokens/s | KD tokens/s | load before | wall s |\n|---|---:|---:|---|---:|\n'
for setup in "1x1" "2x1" "1x2"; do
  procs=${setup%x*} threads=${setup#*x}
  load=$(uptime | sed 's/.*load average: //')
  out="$tmp/run_$setup"
  start=$(date +%s.%N)
  if [ "$procs" = 1 ]; then
    "$bin" -q --threads "$threads" "${common[@]}" --out "$out" >/dev/null 2>"$tmp/err_$setup"
  else
    "$bin" -q launch -n "$procs" -- --threads "$threads" "${common[@]}" --out "$out" >/dev/null 2>"$tmp/err_$setup"
  fi
  wall=$(python3 -c "import time; print(f'{time.time() - $start:.1f}')")
  printf '| %s process(es) x %s thread(s) | %s | %s | %s | %s |\n' "$procs" "$threads" \
    "$(rate "$out/metrics.jsonl" align)" "$(rate "$out/metrics.jsonl" kd)" "$load" "$wall"
done
# Same weights within float tolerance on 1 and 2 processes (the suite tests it; shown here too).
/usr/bin/python3 - "$tmp/run_1x1/model.safetensors" "$tmp/run_2x1/model.safetensors" <<'PY'
import json, struct, sys
import numpy as np
def load(p):
    b = open(p, "rb").read(); n = struct.unpack("<Q", b[:8])[0]; h = json.loads(b[8:8 + n]); out = {}
    for k, v in h.items():
        if k == "__metadata__" or v["dtype"] != "F32": continue
        s, e = v["data_offsets"]; out[k] = np.frombuffer(b[8 + n + s:8 + n + e], np.float32)
    return out
a, b = load(sys.argv[1]), load(sys.argv[2])
rels = {k: np.linalg.norm(a[k] - b[k]) / max(np.linalg.norm(a[k]), 1e-30) for k in a}
worst = max(rels, key=rels.get)
whole = np.sqrt(sum(np.sum((a[k] - b[k]) ** 2) for k in a) / sum(np.sum(a[k] ** 2) for k in a))
print(f"\nrelative L2 difference of all weights, 1 vs 2 processes: {whole:.2e}; "
      f"largest of one tensor: {rels[worst]:.2e} ({worst}, norm {np.linalg.norm(a[worst]):.3g})")
PY
