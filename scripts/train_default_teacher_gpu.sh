#!/usr/bin/env bash
# Trains candidate default teachers in parallel on one GPU with scripts/train_teacher_torch.py and
# keeps the best (highest worst-case KV-probe accuracy over the exported probe sizes).
# DATA is a tar.xz holding two `radistill export-data` directories, full512 (2-96 pairs) and
# small512 (2-16 pairs, the curriculum's start); TOK is the tokenizer directory.
#   [CANDIDATES=FILE] bash scripts/train_default_teacher_gpu.sh DATA.tar.xz TOK OUT [SECONDS]
# The recipe of the shipped teacher and its measurements are in models/default-teacher/README.md.
set -euo pipefail
DATA=$1; TOK=$2; OUT=$3; SECS=${4:-420}
W=${WORK_DIR:-/tmp/teacher-candidates}
mkdir -p "$W" "$OUT"
tar -xJf "$DATA" -C "$W"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
run() {
  local name=$1; shift
  PYTHONUNBUFFERED=1 ${PYTHON:-python3} scripts/train_teacher_torch.py --data "$W/full512" --small-data "$W/small512" \
    --tokenizer "$TOK" --out "$W/$name" --seconds "$SECS" "$@" ${EXTRA:-} > "$W/$name.log" 2>&1 &
}
# One candidate per line of CANDIDATES (default scripts/teacher_candidates.txt): a name, then flags.
while read -r name flags; do
  [[ -z "$name" || "$name" == \#* ]] && continue
  # shellcheck disable=SC2086
  run "$name" $flags
done < "${CANDIDATES:-scripts/teacher_candidates.txt}"
wait || true
${PYTHON:-python3} - "$W" "$OUT" <<'PY'
import json, os, shutil, sys, tarfile
w, out = sys.argv[1], sys.argv[2]
runs = []
for name in sorted(os.listdir(w)):
    s = os.path.join(w, name, "train_summary.json")
    if os.path.exists(s):
        summ = json.load(open(s))
        last = [json.loads(l) for l in open(os.path.join(w, name, "metrics.jsonl"))]
        runs.append((summ["best_min_probe"], -summ["params"], name, summ, last))
runs.sort(reverse=True)
with open(os.path.join(out, "all_runs.txt"), "w") as f:
    for score, _, name, summ, last in runs:
        f.write(f"== {name}: best min probe {score} at step {summ['best_step']}, {summ['params']} params, "
                f"{summ['steps']} steps, {summ['seconds']} s, transformers diff {summ['transformers_max_abs_diff']}\n")
        for rec in last: f.write(json.dumps(rec) + "\n")
        print(name, score, summ["best_step"], summ["steps"], last[-1])
    for name in sorted(os.listdir(w)):
        if name.endswith(".log"):
            f.write(f"== {name}\n" + open(os.path.join(w, name)).read()[-3000:])
for rank, (score, _, name, summ, last) in enumerate(runs[:2]):
    src = os.path.join(w, name)
    files = ["config.json", "model.safetensors", "train_summary.json", "metrics.jsonl", "check_ids.txt"]
    shutil.copy(os.path.join(src, "check_logits.npy"), os.path.join(out, f"rank{rank + 1}_check_logits.npy"))
    with tarfile.open(os.path.join(out, f"rank{rank + 1}_{name}.tar"), "w") as t:
        for f in files: t.add(os.path.join(src, f), arcname=f"{name}/{f}")
print("kept", [r[2] for r in runs[:2]])
PY
