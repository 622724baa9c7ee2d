#!/usr/bin/env bash
# Reproduces the shipped default teacher (models/default-teacher) on this machine's CPU with
# scripts/train_teacher_recipe.py (1 thread; about 2.5 hours on the 2-core VM): run 1 learns copy,
# offset and the compact lookup at up to 8 pairs (4100 steps); run 2 starts from its checkpoint and
# moves the value one token at a time to the probe's position, then widens to 20 and 50 pairs with
# corpus rows (600 steps). Resumable: re-running continues each run from its checkpoint. Then
#   bash scripts/ship_teacher.sh RUN_DIR/t4      (measures and installs it as models/default-teacher)
# The tokenizer is the shipped one (made by `radistill train-tokenizer --corpus data/kjv.txt
# --vocab-size 4096 --force-range 0-99 --force-key-words`), copied first so that shipping a new
# teacher does not change a run's inputs.
#   bash scripts/train_default_teacher.sh [RUN_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${1:-runs/default-teacher}
mkdir -p "$RUN"
bash scripts/get_corpus.sh data/kjv.txt
if [ ! -s "$RUN/tokenizer/tokenizer.json" ]; then
  mkdir -p "$RUN/tokenizer"
  cp models/default-teacher/tokenizer.json models/default-teacher/tokenizer_config.json "$RUN/tokenizer/"
fi
shape=(--d-model 96 --layers 6 --heads 8 --kv-heads 4 --ff 288 --max-tokens 16384 --batch 64
       --eval-every 100 --eval-examples 50 --tokenizer "$RUN/tokenizer" --corpus data/kjv.txt --threads 1)
/usr/bin/python3 scripts/train_teacher_recipe.py --out "$RUN/t2" --seed 4 "${shape[@]}" --steps 4100 --resume
/usr/bin/python3 scripts/train_teacher_recipe.py --out "$RUN/t4" --init-from "$RUN/t2/ckpt.pt" --seed 6 "${shape[@]}" \
  --stages 8:0:0,8:0:1,8:0:2,8:0:3,20:0.1:3,50:0.2:3 --steps 600 --resume
echo "trained: $RUN/t4/hf; install with: bash scripts/ship_teacher.sh $RUN/t4"
