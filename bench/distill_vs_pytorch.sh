#!/usr/bin/env bash
# Distillation throughput of `radistill distill` against the equivalent PyTorch loop
# (bench/distill_pytorch.py): the default teacher, a hybrid converted from it with a head plan
# (default: the top-8 plan of the main run, written below), both stages (alignment, then logit
# KD), float32, batch 16 x seq 256 (distill's defaults), one thread each, one after the other.
# PyTorch runs twice: as installed (glibc malloc) and with tcmalloc preloaded, the allocator
# radistill links. Besides wall-clock tokens/s, each side's tokens per CPU second of its own
# process are reported (a machine shared with other jobs disturbs those less).
#   bench/distill_vs_pytorch.sh [STEPS]   (timed steps per stage, after 5 warm-up steps)
# Environment: RADISTILL (binary, default build/radistill), THREADS (default 1), PLAN (a plan JSON).
set -euo pipefail
cd "$(dirname "$0")/.."
steps=${1:-20}
warm=5
threads=${THREADS:-1}
bin=${RADISTILL:-build/radistill}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
load() { echo "$(date -u +%H:%M:%S) UTC, load average $(uptime | sed 's/.*load average: //')"; }
corpus=data/kjv.txt
if [ ! -f "$corpus" ]; then
  corpus="$tmp/kjv.txt"
  bible -f "Gen1:1-Rev22:21" | sed -E 's/^\S+ //' > "$corpus"
fi
plan=${PLAN:-$tmp/plan.json}
[ -n "${PLAN:-}" ] || echo '{"kept_heads": [[0,1],[0,3],[0,4],[2,2],[2,3],[3,0],[3,1],[3,3]]}' > "$plan"
"$bin" -q --threads "$threads" convert models/default-teacher --plan "$plan" --out "$tmp/student" >/dev/null
# Same function on both sides: both models' logits on 150 fixed ids (three SSD chunks, the last
# padded) from `radistill forward`, compared by the PyTorch script.
ids=$(python3 -c "import random; random.seed(1); print(','.join(str(random.randrange(4094)) for _ in range(150)))")
"$bin" -q --threads "$threads" forward "$tmp/student" --token-ids "$ids" --dump-logits "$tmp/student.npy" >/dev/null
"$bin" -q --threads "$threads" forward models/default-teacher --token-ids "$ids" --dump-logits "$tmp/teacher.npy" >/dev/null

# radistill runs under a poller that reads its CPU time (/proc/PID/stat) whenever a metrics line
# appears. Both figures: over the logged windows after the first (warm-up) one of each stage
# (wall clock: time-weighted mean of the windows' tokens_per_s).
echo "radistill: $(load)"
cpp=$(python3 - "$tmp" "$bin" "$threads" "$corpus" "$steps" "$warm" <<'PY'
import json, os, subprocess, sys, time
tmp, binary, threads, corpus, steps, warm = sys.argv[1:]
metrics = f"{tmp}/run/metrics.jsonl"
n_steps = str(int(steps) + int(warm))
cmd = [binary, "-q", "--threads", threads, "distill", "--teacher", "models/default-teacher", "--student",
       f"{tmp}/student", "--corpus", corpus, "--out", f"{tmp}/run", "--align-steps", n_steps, "--kd-steps", n_steps,
       "--batch", "16", "--seq", "256", "--log-every", warm, "--eval-every", "100000", "--save-every", "100000",
       "--probe-examples", "4"]
proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(f"{tmp}/err", "w"))
tick = os.sysconf("SC_CLK_TCK")
def cpu():  # utime + stime of the radistill process, seconds
    f = open(f"/proc/{proc.pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / tick
seen, cpus = 0, []
while proc.poll() is None:
    n = sum(1 for _ in open(metrics)) if os.path.exists(metrics) else 0
    if n > seen:
        try: c = cpu()
        except OSError: break
        cpus.extend([c] * (n - seen)); seen = n
    time.sleep(0.02)
if proc.wait() != 0: sys.exit(open(f"{tmp}/err").read())
per = {"align": [], "kd": []}
for line, c in zip(open(metrics), cpus):
    r = json.loads(line)
    if "tokens_per_s" in r: per[r["stage"]].append((r["tokens_per_s"], c))
out = {}
for st, w in per.items():
    wall = [x for x, _ in w][1:]
    out[st] = len(wall) / sum(1 / x for x in wall)
    out[st + "_per_cpu_s"] = len(wall) * int(warm) * 16 * 256 / (w[-1][1] - w[0][1])
print(json.dumps(out))
PY
)
echo "  $cpp"

declare -A py
for variant in glibc tcmalloc; do
  pre=(); check=()
  [ "$variant" = tcmalloc ] && pre=(env LD_PRELOAD=/lib/x86_64-linux-gnu/libtcmalloc.so.4)
  [ "$variant" = glibc ] && check=(--check-ids "$ids" --check-student-logits "$tmp/student.npy" \
    --check-teacher-logits "$tmp/teacher.npy")
  echo "pytorch ($variant malloc): $(load)"
  py[$variant]=$("${pre[@]}" /usr/bin/python3 bench/distill_pytorch.py --student "$tmp/student" --steps "$steps" \
    --warmup-steps "$warm" --threads "$threads" "${check[@]}")
  echo "  ${py[$variant]}"
done
echo "end: $(load)"

python3 - "$cpp" "${py[glibc]}" "${py[tcmalloc]}" <<'PY'
import json, sys
cpp, pg, pt = (json.loads(x) for x in sys.argv[1:])
assert pg["student_params"] == pg["converted_student_params"], "the PyTorch student differs from the converted one"
print(f"student parameters: PyTorch {pg['student_params']:,}, radistill's converted student "
      f"{pg['converted_student_params']:,}; trainable: align {pg['align_trainable_params']:,}, "
      f"kd {pg['kd_trainable_params']:,}; teacher {pg['teacher_params']:,}")
print("max |logit difference| against radistill's forward on 150 ids:", pg["logits_max_abs_diff_vs_radistill"])
print("| stage | figure | radistill | PyTorch | ratio | PyTorch + tcmalloc | ratio |")
print("|---|---|---|---|---|---|---|")
for st in ("align", "kd"):
    for label, ck, pk in (("tokens/s", "", "_tokens_per_s"), ("tokens per CPU s", "_per_cpu_s", "_tokens_per_cpu_s")):
        c, g, t = cpp[st + ck], pg[st + pk], pt[st + pk]
        print(f"| {st} | {label} | {c:,.0f} | {g:,.0f} | {c / g:.2f}x | {t:,.0f} | {c / t:.2f}x |")
PY
