#!/usr/bin/env bash
# The method on a real pretrained teacher, SmolLM2-135M-Instruct (issues 18 and 29): which probe it
# solves, the sweep of all 270 heads with the causal check on other examples and keys, then the
# retrieval-aware hybrid against its baselines at each snapshot of the long head-bank job.
# Resumable: each stage is skipped when its output is there.
#   bash scripts/run_smollm2.sh [--threads N]     (SMOLLM2_OUT=DIR puts the outputs elsewhere)
# Outputs in runs/smollm2/: probe_sizes.jsonl, heads_needle/ (heads.md, heads.json, heads.svg,
# causal.svg, plan.json), bank/tokens-N/ (one `radistill run` per bank snapshot), curve.md, curve.svg,
# report.json, times.tsv (wall seconds per stage).
#
# Why the needle probe: SmolLM2-135M does not solve the paper's KV probe. On 100 examples of the
# "select" keys it scores 41% / 23% / 8% / 6% at 3 / 5 / 10 / 20 pairs, where picking any value of
# the dictionary scores 33% / 20% / 10% / 5%: chance. It solves the needle task (a sentence "The
# secret number of the KEY is N." inside filler text, asked at the end) at 100%, so its heads are
# scored on that (NEEDLE_WORDS filler words, EXAMPLES examples; override by environment).
#
# 3. The method on it, at snapshots of the head bank (issue 29): the long job scripts/smollm2_bank.sh
# aligns a recurrent replacement of all 270 heads and keeps a copy at 1M, 3M, 10M, ... tokens
# ($BANK_DIR/snapshots/tokens-N). For each snapshot, `radistill run --bank SNAPSHOT` chooses the kept
# set by sufficiency on it (select keys; --budget auto, sets judged assembled from the bank), assembles
# that hybrid, RANDOM_DRAWS random sets of the same k, the layer-wise hybrid at the hybrid's KV cache and
# the pure SSM from the same snapshot, gives each the same short KD (KD_STEPS steps of BATCH x SEQ tokens
# of KJV text; the shrunk hybrid SHRINK_KD_STEPS), and evaluates them on test keys (the needle at the
# probe's length and at 200 words, two facts in 200 words, perplexity). Each run resumes; a finished one
# is not run again.
# 4. `radistill bank-curve` puts the finished runs side by side: runs/smollm2/curve.md (the table),
# curve.svg (accuracy against bank tokens), report.json (the latest run's report with the curve).
#
# Time (one thread): the sweep ~21 min; per snapshot the selection ~15 min, each of the 9 students'
# KD ~20 s a step, the evaluation ~3 min a model. Stages 1-2 once; stage 3 as snapshots appear.
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=1
if [ "${1:-}" = "--threads" ]; then THREADS=${2:?--threads needs a number}; shift 2; fi
RADISTILL=${RADISTILL:-build/radistill}
MODEL=models/smollm2-135m-instruct
OUT=${SMOLLM2_OUT:-runs/smollm2}
NEEDLE_WORDS=${NEEDLE_WORDS:-40}
EXAMPLES=${EXAMPLES:-16}
CAUSAL_EXAMPLES=${CAUSAL_EXAMPLES:-32}
BANK_DIR=${SMOLLM2_BANK_DIR:-/var/tmp/radistill/smollm2-bank}
SELECT_EXAMPLES=${SELECT_EXAMPLES:-64}
MAX_HEADS=${MAX_HEADS:-12}
RANDOM_DRAWS=${RANDOM_DRAWS:-5}
KD_STEPS=${KD_STEPS:-20}
SHRINK_KD_STEPS=${SHRINK_KD_STEPS:-10}
BATCH=${BATCH:-4}
SEQ=${SEQ:-256}
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

# 3. The comparison at each snapshot of the bank.
CORPUS=data/kjv.txt
[ -s "$CORPUS" ] || bash scripts/get_corpus.sh "$CORPUS"
shopt -s nullglob
SNAPSHOTS=("$BANK_DIR"/snapshots/tokens-*)
[ ${#SNAPSHOTS[@]} -gt 0 ] || { echo "no bank snapshots in $BANK_DIR/snapshots yet: start scripts/smollm2_bank.sh" \
  "(its first snapshot comes at 1M tokens)" >&2; exit 1; }
FINISHED=()
for snap in "${SNAPSHOTS[@]}"; do
  case "$snap" in *.partial) continue ;; esac
  run_dir="$OUT/bank/$(basename "$snap")"
  if [ ! -s "$run_dir/report.json" ]; then
    timed "run_$(basename "$snap")" "$RADISTILL" --threads "$THREADS" run --teacher "$MODEL" --corpus "$CORPUS" \
      --out "$run_dir" --bank "$snap" --heads-dir "$OUT/heads_needle" \
      --probe-task needle --context-words "$NEEDLE_WORDS" --head-examples "$SELECT_EXAMPLES" \
      --budget auto --max-heads "$MAX_HEADS" --select-candidates "$MAX_HEADS" --select-kd-steps 0 \
      --random-draws "$RANDOM_DRAWS" --no-layerwise --layerwise-same-cache \
      --align-steps 0 --kd-steps "$KD_STEPS" --shrink-align-steps 0 --shrink-kd-steps "$SHRINK_KD_STEPS" \
      --batch "$BATCH" --seq "$SEQ" --save-every 5 --eval-examples "$EVAL_EXAMPLES" --eval-kv-pairs 3 \
      --eval-needle-words 200 --eval-multi-needle-words 200 --eval-needles 2
  fi
  FINISHED+=("$run_dir")
done

# 4. The curve over the finished runs.
"$RADISTILL" -q bank-curve "${FINISHED[@]}" --out "$OUT"
echo "table: $OUT/curve.md; figure: $OUT/curve.svg; report: $OUT/report.json"
