#!/usr/bin/env bash
# Set up, build and run the current main job: a short demonstration of the pipeline built so far,
# until the shipped default teacher and `radistill run` land. Outputs go to runs/demo/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
cmake --build build -j2 --target radistill
R=runs/demo
mkdir -p "$R"
set -x
./build/radistill env
[ -s "$R/kjv.txt" ] || bible -f "Gen1:1-Rev22:21" | sed -E 's/^\S+ //' > "$R/kjv.txt"
./build/radistill train-tokenizer --corpus "$R/kjv.txt" --vocab-size 4096 --force-range 0-99 --force-key-words --out "$R/tokenizer"
resume=(); [ -e "$R/model/checkpoints/latest" ] && resume=(--resume)
./build/radistill pretrain --tokenizer "$R/tokenizer" --corpus "$R/kjv.txt" --out "$R/model" \
  --d-model 64 --n-layer 4 --n-head 8 --n-head-kv 4 --d-ff 192 --seq 128 --batch 16 --steps 300 \
  --lr 3e-3 --warmup 50 --bf16 --task-share 0.6 --tasks mqar,kv --max-pairs 8 --probe-pairs 8 \
  --eval-every 100 --save-every 100 "${resume[@]}"
./build/radistill inspect "$R/model"
./build/radistill generate "$R/model" --text "In the beginning" --max-new-tokens 16
./build/radistill eval-tasks "$R/model" --task kv --pairs 8 --examples 100
./build/radistill heads "$R/model" --out "$R/heads" --pairs 8 --examples 64 --budget 2
cat "$R/heads/heads.md"
rm -rf "$R/hybrid-init" "$R/hybrid-small"
./build/radistill convert "$R/model" --plan "$R/heads/plan.json" --out "$R/hybrid-init"
./build/radistill inspect "$R/hybrid-init"
resume=(); [ -e "$R/hybrid/checkpoints/latest" ] && resume=(--resume)
./build/radistill distill --teacher "$R/model" --student "$R/hybrid-init" --corpus "$R/kjv.txt" --out "$R/hybrid" \
  --align-steps 50 --kd-steps 50 --batch 8 --seq 128 --bf16 --max-pairs 8 --probe-pairs 8 --eval-every 50 "${resume[@]}"
./build/radistill shrink --model "$R/hybrid" --d-state 2 --out "$R/hybrid-small"
./build/radistill generate "$R/hybrid-small" --text "In the beginning" --max-new-tokens 16 --stats
