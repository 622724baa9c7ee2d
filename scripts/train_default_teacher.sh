#!/usr/bin/env bash
# Reproduces the shipped default teacher (models/default-teacher) from scratch on this machine:
# KJV corpus -> byte-level BPE tokenizer -> `radistill pretrain`. Resumable: re-running continues
# the run in RUN_DIR from its latest checkpoint.
#   bash scripts/train_default_teacher.sh [RUN_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${1:-runs/default-teacher}
mkdir -p "$RUN"
bin=build/radistill
[ -x "$bin" ] || { echo "build first: cmake -S . -B build && cmake --build build -j2" >&2; exit 1; }

# Corpus: the King James Bible from Debian's bible-kjv package, verse labels stripped.
if [ ! -s "$RUN/kjv.txt" ]; then
  bible -f "Gen1:1-Rev22:21" | sed -E 's/^\S+ //' > "$RUN/kjv.txt.tmp" && mv "$RUN/kjv.txt.tmp" "$RUN/kjv.txt"
fi
# Tokenizer: 4096 tokens; the values 0-99 and the 1000 task key words are single tokens.
if [ ! -s "$RUN/tokenizer/tokenizer.json" ]; then
  "$bin" train-tokenizer --corpus "$RUN/kjv.txt" --vocab-size 4096 --force-range 0-99 --force-key-words \
    --out "$RUN/tokenizer"
fi
resume=()
[ -e "$RUN/model/checkpoints/latest" ] && resume=(--resume)
"$bin" pretrain --tokenizer "$RUN/tokenizer" --corpus "$RUN/kjv.txt" --out "$RUN/model" \
  --d-model 128 --n-layer 6 --n-head 8 --n-head-kv 4 --d-ff 384 --max-position 1024 \
  --seq 256 --batch 16 --steps 24000 --lr 3e-3 --warmup 300 --schedule wsd --decay-fraction 0.2 \
  --bf16 --seed 1 --task-share 0.6 --tasks mqar,kv --min-pairs 2 --max-pairs 24 --queries 8 \
  --answer-weight 2 --save-every 500 --eval-every 500 --log-every 50 --probe-pairs 20 --probe-examples 100 \
  "${resume[@]}"
