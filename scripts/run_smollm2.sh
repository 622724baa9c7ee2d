#!/usr/bin/env bash
# The method's first half on a real pretrained teacher, SmolLM2-135M-Instruct (issue 18): which probe
# it solves, the sweep of all 270 heads, and the causal check on other examples and keys.
# Resumable: each stage is skipped when its output is there.
#   bash scripts/run_smollm2.sh [--threads N]
# Outputs: runs/smollm2/probe_sizes.jsonl, runs/smollm2/heads_needle/ (heads.md, heads.json,
# heads.svg, causal.svg, plan.json), runs/smollm2/times.tsv (wall seconds per stage).
#
# Why the needle probe: SmolLM2-135M does not solve the paper's KV probe. On 100 examples of the
# "select" keys it scores 41% / 23% / 8% / 6% at 3 / 5 / 10 / 20 pairs, where picking any value of
# the dictionary scores 33% / 20% / 10% / 5%: chance. It solves the needle task (a sentence "The
# secret number of the KEY is N." inside filler text, asked at the end) at 100%, so its heads are
# scored on that (NEEDLE_WORDS filler words, EXAMPLES examples; override by environment).
#
# 3. The method on it (`radistill run` over the sweep of stage 2): hybrids keeping the top 2% (6) and
# 5% (14) heads, one random draw of 6 heads, the pure SSM and the top-2% hybrid shrunk to d_state 8,
# every one distilled with the same small budget (ALIGN_STEPS + KD_STEPS steps of BATCH x SEQ tokens
# of KJV text; shrinking: a third of that), then evaluated side by side on the test keys. One
# distillation step of a 135 M model takes 5-12 s on one CPU thread, so this budget (tens of
# thousands of tokens against the paper's billions) shows what the kept heads carry over from the
# teacher, not what a full distillation reaches. No layer-wise baselines (time).
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=1
if [ "${1:-}" = "--threads" ]; then THREADS=${2:?--threads needs a number}; shift 2; fi
RADISTILL=${RADISTILL:-build/radistill}
MODEL=models/smollm2-135m-instruct
OUT=runs/smollm2
NEEDLE_WORDS=${NEEDLE_WORDS:-40}
EXAMPLES=${EXAMPLES:-16}
CAUSAL_EXAMPLES=${CAUSAL_EXAMPLES:-32}
ALIGN_STEPS=${ALIGN_STEPS:-120}
KD_STEPS=${KD_STEPS:-70}
BATCH=${BATCH:-4}
SEQ=${SEQ:-128}
EVAL_EXAMPLES=${EVAL_EXAMPLES:-32}
[ -x "$RADISTILL" ] || { echo "$RADISTILL is missing: build first (cmake --build build --target radistill)" >&2; exit 1; }

RADISTILL=$RADISTILL bash scripts/get_smollm2.sh
mkdir -p "$OUT"
timed() {  # timed NAME COMMAND...: run, append "NAME<TAB>seconds" to times.tsv
  local name=$1 start
  shift
  start=$(date +%s)
  "$@"
  printf '%s\t%s\n' "$name" $(($(date +%s) - start)) >> "$OUT/times.tsv"
}

# 1. Which probe it solves (selection keys; the causal check below uses the disjoint test keys).
probe() {  # probe ARGS...: one eval-tasks line into probe_sizes.jsonl.tmp
  "$RADISTILL" --threads "$THREADS" -q eval-tasks "$MODEL" --examples 100 --split select --seed 11 "$@" \
    | python3 -c "import json,sys; print(json.dumps(json.load(sys.stdin)))" \
    >> "$OUT/probe_sizes.jsonl.tmp"
}
if [ ! -s "$OUT/probe_sizes.jsonl" ]; then
  rm -f "$OUT/probe_sizes.jsonl.tmp"
  for p in 3 5 10 20; do probe --task kv --pairs "$p"; done
  probe --task needle --context-words "$NEEDLE_WORDS"
  mv "$OUT/probe_sizes.jsonl.tmp" "$OUT/probe_sizes.jsonl"
fi
python3 -c "
import json
for l in open('$OUT/probe_sizes.jsonl'):
    d = json.loads(l)
    what = 'kv %d pairs' % d['pairs'] if d['task'] == 'kv' else d['task']
    print('%-14s %5.1f%%  [%.1f, %.1f]' % (what, 100 * d['accuracy'], 100 * d['ci95'][0], 100 * d['ci95'][1]))"

# 2. The sweep of every head and the causal check (top-k against random-k heads ablated together).
if [ ! -s "$OUT/heads_needle/heads.json" ]; then
  timed heads_needle "$RADISTILL" --threads "$THREADS" heads "$MODEL" --out "$OUT/heads_needle" --task needle \
    --context-words "$NEEDLE_WORDS" --examples "$EXAMPLES" --causal-examples "$CAUSAL_EXAMPLES" --random-draws 3 \
    --fraction 0.02 --batch 16
fi
echo "heads report: $OUT/heads_needle/heads.md"

# 3. Distilled hybrids and baselines, side by side (resumes an interrupted run).
CORPUS=data/kjv.txt
[ -s "$CORPUS" ] || bash scripts/get_corpus.sh
if [ ! -s "$OUT/distill/report.json" ]; then
  timed run "$RADISTILL" --threads "$THREADS" run --teacher "$MODEL" --corpus "$CORPUS" --out "$OUT/distill" \
    --probe-task needle --context-words "$NEEDLE_WORDS" --heads-dir "$OUT/heads_needle" --fraction 0.02 \
    --heads-sweep 14 --random-draws 1 --no-layerwise \
    --align-steps "$ALIGN_STEPS" --kd-steps "$KD_STEPS" \
    --shrink-align-steps $((ALIGN_STEPS / 3)) --shrink-kd-steps $((KD_STEPS / 3)) --batch "$BATCH" --seq "$SEQ" \
    --save-every 10 --eval-examples "$EVAL_EXAMPLES" --eval-kv-pairs 3 --eval-needle-words "$NEEDLE_WORDS"
fi
echo "report: $OUT/distill/report.md"
