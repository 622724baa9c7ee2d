#!/usr/bin/env bash
# Regenerates scripts/lm_eval_tasks/radistill_kv{20,50}.jsonl: the examples of
# `radistill eval-tasks --task kv --pairs P --examples 200 --seed 0` (eval key pool) as text, from
# `radistill export-data`'s KV probes (same generator and seed), decoded with TOKENIZER_DIR's
# tokenizer (default models/default-teacher; the text does not depend on it). Needs build/radistill
# and the lm-eval venv (bash scripts/setup_lm_eval.sh) for numpy and tokenizers.
set -euo pipefail
cd "$(dirname "$0")/../.."
TOK="${1:-models/default-teacher}"
RADISTILL="${RADISTILL:-build/radistill}"
PY="${RAD_LMEVAL_VENV:-$PWD/build-lmeval-venv}/bin/python"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
# export-data also writes pretrain's task rows and corpus tokens; a 1-row, 3-line corpus keeps that trivial.
printf 'In the beginning God created the heaven and the earth.\nAnd the earth was without form, and void.\nAnd God said, Let there be light.\n' >"$TMP/corpus.txt"
"$RADISTILL" --threads 1 export-data --tokenizer "$TOK" --corpus "$TMP/corpus.txt" --out "$TMP/export" \
  --rows 1 --seq 8 --tasks kv --probe-pairs 20,50 --probe-examples 200 --probe-seed 0 >/dev/null
for p in 20 50; do
  "$PY" scripts/lm_eval_tasks/make_kv_jsonl.py "$TMP/export" "$TOK" "$p" "scripts/lm_eval_tasks/radistill_kv$p.jsonl"
done
