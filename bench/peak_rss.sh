#!/usr/bin/env bash
# Peak RSS of every stage on a random-weight model of SmolLM2-135M's shape (issue 16): 30 layers,
# 9 query / 3 KV heads, d_model 576, d_ff 1536, vocab 49152, tied embeddings, stored in bf16.
# Each stage is one radistill process on 1 thread under /usr/bin/time -v ("Maximum resident set
# size", which counts the mapped checkpoint pages the process touched as well as its heap).
# Stages run with tiny example / step counts: enough to reach each stage's steady-state memory,
# not to learn anything. Prints a Markdown table (also written to $W/peak_rss.md).
#   bash bench/peak_rss.sh            (about 20 minutes on 1 thread here)
#   STAGES="ckpt" bash bench/peak_rss.sh   (a subset, appended to the table; later groups need the
#                                          earlier groups' outputs in $W/work)
# Stage groups: base heads convert distill ckpt shrink eval runtime.
# Needs models/smollm2-135m-instruct (scripts/get_smollm2.sh) for SmolLM2's 49152-token tokenizer
# and data/kjv.txt (scripts/get_corpus.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
RAD=${RADISTILL:-build/radistill}
W=${RSS_DIR:-runs/rss}
CORPUS=${CORPUS:-data/kjv.txt}
STEPS=${STEPS:-2}
BATCH=${BATCH:-4}
SEQ=${SEQ:-256}
T=$W/teacher
[ -x "$RAD" ] || { echo "$RAD is missing: build first (cmake --build build --target radistill)" >&2; exit 1; }
[ -f "$CORPUS" ] || { echo "$CORPUS is missing: run scripts/get_corpus.sh" >&2; exit 1; }
if [ ! -f "$T/model.safetensors" ]; then
  /usr/bin/python3 bench/make_random_llama.py --tokenizer-from models/smollm2-135m-instruct --out "$T"
fi
ALL="base heads convert distill ckpt shrink eval runtime"
STAGES=${STAGES:-$ALL}
want() { [[ " $STAGES " == *" $1 "* ]]; }
mkdir -p "$W/logs" "$W/work"
TABLE=$W/peak_rss.md
if [ "$STAGES" = "$ALL" ]; then
  rm -rf "${W:?}/work/"*
  {
    echo "| stage | teacher weights | peak RSS (MiB) | wall (s) | command (radistill --threads 1 ...) |"
    echo "|---|---|---:|---:|---|"
  } > "$TABLE"
fi

# measure NAME WEIGHTS ARGS...: runs `radistill --threads 1 ARGS`, appends a table row.
measure() {
  local name=$1 weights=$2
  shift 2
  local log=$W/logs/$name.time
  echo "[peak_rss] $name: radistill --threads 1 $*" >&2
  if ! /usr/bin/time -v "$RAD" --threads 1 "$@" > "$W/logs/$name.out" 2> "$log"; then
    echo "[peak_rss] $name failed; see $log" >&2
    tail -5 "$log" >&2
    exit 1
  fi
  local kib wall
  kib=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$log")
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$log" | awk -F: '{s = 0; for (i = 1; i <= NF; ++i) s = s * 60 + $i; print s}')
  local cmd="$*"
  cmd=${cmd//$W\//}
  printf '| %s | %s | %.0f | %.1f | `%s` |\n' "$name" "$weights" "$(echo "$kib / 1024" | bc -l)" "$wall" "$cmd" >> "$TABLE"
}

P=$W/work
if want base; then
  measure "process baseline (env)" "-" env
  measure "inspect (loads a float32 copy)" "float32 copy" inspect "$T"
fi
HEADS="--pairs 4 --examples 2 --batch 2 --causal-examples 2 --random-draws 1 --budget 4"
if want heads; then
  # shellcheck disable=SC2086
  measure "heads" "float32 copy" heads "$T" --out "$P/heads_fp32" $HEADS --weights-dtype float32
  # shellcheck disable=SC2086
  measure "heads" "bf16 as stored" heads "$T" --out "$P/heads" $HEADS
fi
want convert && measure "convert" "float32 copy" convert "$T" --plan "$P/heads/plan.json" --out "$P/hybrid"
DISTILL="--corpus $CORPUS --batch $BATCH --seq $SEQ --probe-pairs 2 --probe-examples 2 --eval-every 1000"
if want distill; then
  for wd in float32 auto; do
    label=$([ $wd = auto ] && echo "bf16 as stored" || echo "float32 copy")
    # shellcheck disable=SC2086
    measure "distill align ($STEPS steps, batch $BATCH x $SEQ)" "$label" distill --teacher "$T" --student "$P/hybrid" \
      --out "$P/align_$wd" --align-steps "$STEPS" --kd-steps 0 --teacher-dtype $wd $DISTILL
    # shellcheck disable=SC2086
    measure "distill kd ($STEPS steps, batch $BATCH x $SEQ)" "$label" distill --teacher "$T" --student "$P/hybrid" \
      --out "$P/kd_$wd" --align-steps 0 --kd-steps "$STEPS" --teacher-dtype $wd $DISTILL
  done
fi
if want ckpt; then
  # shellcheck disable=SC2086
  measure "distill align, activation checkpointing" "bf16 as stored" distill --teacher "$T" --student "$P/hybrid" \
    --out "$P/align_ckpt" --align-steps "$STEPS" --kd-steps 0 --activation-checkpointing $DISTILL
  # shellcheck disable=SC2086
  measure "distill kd, activation checkpointing" "bf16 as stored" distill --teacher "$T" --student "$P/hybrid" \
    --out "$P/kd_ckpt" --align-steps 0 --kd-steps "$STEPS" --activation-checkpointing $DISTILL
fi
want shrink && measure "shrink (d_state 64 -> 8)" "-" shrink --model "$P/kd_auto" --d-state 8 --out "$P/shrunk"
if want eval; then
  measure "eval (teacher + hybrid)" "float32 copy" eval "$T" "$P/kd_auto" --out "$P/eval" --examples 2 --kv-pairs 4 \
    --needle-words 50 --needle-depths 0.5 --phonebook-entries 4 --mqar-pairs 4 --mqar-queries 2 --batch 2
fi
if want runtime; then
  measure "runtime bench, teacher" "bf16 as stored" bench "$T" --engine runtime --prompt 128 --gen 32 --reps 1
  measure "runtime bench, hybrid (float32)" "-" bench "$P/kd_auto" --engine runtime --prompt 128 --gen 32 --reps 1
  measure "runtime generate, teacher" "bf16 as stored" generate "$T" --text "In the beginning" --max-new-tokens 32
fi
cat "$TABLE"
