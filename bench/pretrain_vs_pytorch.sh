#!/usr/bin/env bash
# Pretraining throughput of `radistill pretrain` against the equivalent PyTorch loop
# (bench/pretrain_pytorch.py), default-teacher shape, fp32 and bf16 autocast, in one run so the
# ratio is comparable. Both use 2 threads and random-token batches of 16 x 256 (radistill's batches
# come from its data mixer, which costs a little extra).
#   bench/pretrain_vs_pytorch.sh [STEPS]
set -euo pipefail
cd "$(dirname "$0")/.."
steps=${1:-40}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
bible -f "Gen1:1-Rev22:21" | sed -E 's/^\S+ //' > "$tmp/kjv.txt"
build/radistill -q train-tokenizer --corpus "$tmp/kjv.txt" --vocab-size 4096 --force-range 0-99 --force-key-words --out "$tmp/tok" >/dev/null
for mode in fp32 bf16; do
  flag=(); pyflag=()
  [ "$mode" = bf16 ] && flag=(--bf16) && pyflag=(--bf16)
  rm -rf "$tmp/run"
  build/radistill -q --threads 2 pretrain --tokenizer "$tmp/tok" --corpus "$tmp/kjv.txt" --out "$tmp/run" \
    --d-model 128 --n-layer 6 --n-head 8 --n-head-kv 4 --d-ff 384 --seq 256 --batch 16 --steps $((steps + 5)) \
    --log-every 5 --eval-every 100000 --save-every 100000 --task-share 0.6 "${flag[@]}" 2>/dev/null
  # Mean tokens/s over the logged windows after the first (warm-up) one.
  cpp=$(python3 -c "import json,sys; r=[json.loads(l) for l in open('$tmp/run/metrics.jsonl') if '\"loss\"' in l][1:]; print(sum(x['tokens_per_s'] for x in r)/len(r))")
  py=$(/usr/bin/python3 bench/pretrain_pytorch.py --steps "$steps" "${pyflag[@]}" | python3 -c "import json,sys; print(json.load(sys.stdin)['tokens_per_s'])")
  python3 -c "print('$mode: radistill %.0f tokens/s, pytorch %.0f tokens/s, ratio %.2fx' % ($cpp, $py, $cpp/$py))"
done
