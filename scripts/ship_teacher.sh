#!/usr/bin/env bash
# Ship a teacher trained by scripts/train_teacher_recipe.py as models/default-teacher (issue 13):
# copies RUN/hf (the HF checkpoint), writes heldout_words.txt (the other single-token corpus words
# that were never task keys) and key_pools.json, copies the run's metrics, and measures the card's
# numbers with the C++ tool on fresh examples: the KV probe at 8/20/50 pairs on the training keys,
# the held-out task keys (--split eval) and the held-out corpus words (--key-file), and perplexity
# on the held-out 2% of the corpus. The new directory replaces the old one only when all of that
# succeeded (written beside it, then renamed).
#   bash scripts/ship_teacher.sh RUN_DIR [OUT_DIR=models/default-teacher] [EXAMPLES=500]
set -euo pipefail
run=${1:?usage: ship_teacher.sh RUN_DIR [OUT_DIR] [EXAMPLES]}
out=${2:-models/default-teacher}
examples=${3:-500}
cli="${RADISTILL:-build/radistill} --threads ${THREADS:-1}"  # 1 thread: libtorch's all-core default collapses when anything else runs
corpus=${CORPUS:-data/kjv.txt}
for f in config.json model.safetensors tokenizer.json tokenizer_config.json; do
  [ -f "$run/hf/$f" ] || { echo "ship_teacher: $run/hf/$f is missing (expected the run's HF checkpoint)" >&2; exit 1; }
done
[ -f "$run/key_pools.json" ] || { echo "ship_teacher: $run/key_pools.json is missing" >&2; exit 1; }
new="$out.new.$$"
rm -rf "$new"; mkdir -p "$new"
cp "$run/hf/"{config.json,model.safetensors,tokenizer.json,tokenizer_config.json} "$new/"
cp "$run/key_pools.json" "$new/key_pools.json"
cp "$run/metrics.jsonl" "$new/training_metrics.jsonl"
/usr/bin/python3 -c 'import json,sys; print("\n".join(json.load(open(sys.argv[1]))["heldout_other_words"]))' \
  "$run/key_pools.json" >"$new/heldout_words.txt"

probe="$new/probe.jsonl"
: >"$probe"
for pairs in 8 20 50; do
  for keys in train eval other; do
    if [ "$keys" = other ]; then sel=(--key-file "$new/heldout_words.txt"); else sel=(--split "$keys"); fi
    echo "ship_teacher: kv probe, $pairs pairs, $keys keys" >&2
    $cli -q eval-tasks "$new" --task kv --pairs "$pairs" --examples "$examples" --seed 1 "${sel[@]}" |
      /usr/bin/python3 -c 'import json,sys; d=json.load(sys.stdin); d["keys"]=sys.argv[1]; print(json.dumps(d))' "$keys" >>"$probe"
  done
done
echo "ship_teacher: perplexity on the held-out corpus split" >&2
$cli -q eval "$new" --out "$new/eval.tmp" --corpus "$corpus" --kv-pairs 8 --examples 20 --needle-words 200 \
  --needle-depths 0.5 >/dev/null
mv "$new/eval.tmp/eval.json" "$new/eval_ppl.json"; rm -rf "$new/eval.tmp"
# The card's table (markdown) from what was just measured.
/usr/bin/python3 - "$probe" "$new/eval_ppl.json" >"$new/probe_table.md" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
names = {"train": "training keys", "eval": "held-out task keys", "other": "held-out corpus words"}
print("| keys | 8 pairs | 20 pairs | 50 pairs |\n|---|---:|---:|---:|")
for keys in ("train", "eval", "other"):
    cells = []
    for pairs in (8, 20, 50):
        r = next(r for r in rows if r["keys"] == keys and r["pairs"] == pairs)
        cells.append(f"{100 * r['accuracy']:.1f}% [{100 * r['ci95'][0]:.1f}, {100 * r['ci95'][1]:.1f}] (n={r['answers']})")
    print(f"| {names[keys]} | " + " | ".join(cells) + " |")
print(f"\nPerplexity on the held-out 2% of the corpus: {json.load(open(sys.argv[2]))['models'][0]['perplexity']:.2f}")
PY
rm -rf "$out.old"; [ -d "$out" ] && mv "$out" "$out.old"
mv "$new" "$out"; rm -rf "$out.old"
echo "ship_teacher: wrote $out (probe: $out/probe.jsonl, perplexity: $out/eval_ppl.json)" >&2
