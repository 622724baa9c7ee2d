#!/usr/bin/env bash
# lm-evaluation-harness against `radistill serve` (issue 31, part 3).
#
#   bash scripts/lm_eval.sh MODEL_DIR TASKS [OUT]
#
# Starts `build/radistill --threads 1 serve MODEL_DIR` on a free loopback port (--port 0, read
# back from its log), waits until /health answers, runs lm-eval's `local-completions` model on
# TASKS (comma-separated; the project's tasks are in scripts/lm_eval_tasks/: radistill_kv20,
# radistill_kv50, or the tag radistill_kv), and writes into OUT (default runs/lm_eval/<model dir
# name>/): results.md (lm-eval's markdown table), results.json (lm-eval's results file),
# lm_eval.log, serve.log and lm-eval's own output folder raw/. The server is stopped on exit
# (trap), whatever happens.
#
# Requests are token ids (tokenized_requests=True, add_bos_token=True, the model directory's
# tokenizer.json through transformers), one per request (batch_size=1: serve takes one prompt per
# request). With tokenized_requests=False lm-eval sends text, the server's tokenizer prepends BOS,
# and lm-eval's context length (counted without BOS) is one short: every score would include the
# last context token. README "lm-evaluation-harness against serve" has the details.
#
# No hub access at run time: HF_HUB_OFFLINE / HF_DATASETS_OFFLINE are set and the tasks' data are
# local JSONL files. Environment: RADISTILL (binary, default build/radistill), RAD_THREADS (1),
# LM_EVAL_LIMIT (lm-eval --limit, for quick checks), RAD_LMEVAL_VENV (default build-lmeval-venv).
set -euo pipefail
if [ $# -lt 2 ] || [ $# -gt 3 ]; then
  sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
fi
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
MODEL_DIR="$(cd "$1" && pwd)"
TASKS="$2"
NAME="$(basename "$MODEL_DIR")"
OUT="${3:-$ROOT/runs/lm_eval/$NAME}"
RADISTILL="${RADISTILL:-$ROOT/build/radistill}"
THREADS="${RAD_THREADS:-1}"
VENV="${RAD_LMEVAL_VENV:-$ROOT/build-lmeval-venv}"
cd "$ROOT"

[ -x "$RADISTILL" ] || { echo "lm_eval.sh: $RADISTILL not found (build radistill first)" >&2; exit 1; }
[ -f "$MODEL_DIR/tokenizer.json" ] || { echo "lm_eval.sh: $MODEL_DIR has no tokenizer.json" >&2; exit 1; }
bash scripts/setup_lm_eval.sh
for p in 20 50; do
  [ -s "scripts/lm_eval_tasks/radistill_kv$p.jsonl" ] || bash scripts/lm_eval_tasks/make_kv_jsonl.sh
done
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"

SERVER_PID=""
stop_server() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
}
trap stop_server EXIT
trap 'exit 130' INT TERM

"$RADISTILL" --threads "$THREADS" serve "$MODEL_DIR" --host 127.0.0.1 --port 0 >"$OUT/serve.log" 2>&1 &
SERVER_PID=$!
PORT=""
for _ in $(seq 600); do
  kill -0 "$SERVER_PID" 2>/dev/null || { cat "$OUT/serve.log" >&2; echo "lm_eval.sh: serve exited" >&2; exit 1; }
  PORT="$(sed -n 's|^listening on http://127\.0\.0\.1:\([0-9][0-9]*\).*|\1|p' "$OUT/serve.log" | head -1)"
  if [ -n "$PORT" ] && curl -sf "http://127.0.0.1:$PORT/health" >/dev/null 2>&1; then break; fi
  PORT=""
  sleep 0.2
done
[ -n "$PORT" ] || { echo "lm_eval.sh: serve did not answer within 120 s (see $OUT/serve.log)" >&2; exit 1; }
CTX="$(sed -n 's/.*context \([0-9][0-9]*\) tokens.*/\1/p' "$OUT/serve.log" | head -1)"
echo "lm_eval.sh: serving $NAME on 127.0.0.1:$PORT (context ${CTX:-?} tokens); tasks $TASKS -> $OUT"

export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export HF_HOME="${HF_HOME:-$VENV/hf-home}"
MODEL_ARGS="model=$NAME,base_url=http://127.0.0.1:$PORT/v1/completions,tokenizer_backend=huggingface"
MODEL_ARGS+=",tokenizer=$MODEL_DIR,tokenized_requests=True,add_bos_token=True,max_length=${CTX:-2048}"
MODEL_ARGS+=",num_concurrent=1,max_retries=3,timeout=600"
ARGS=(--model local-completions --model_args "$MODEL_ARGS" --include_path "$ROOT/scripts/lm_eval_tasks"
      --tasks "$TASKS" --batch_size 1 --output_path "$OUT/raw")
[ -n "${LM_EVAL_LIMIT:-}" ] && ARGS+=(--limit "$LM_EVAL_LIMIT")
rm -rf "$OUT/raw"
echo "lm_eval.sh: $VENV/bin/lm_eval ${ARGS[*]}"
"$VENV/bin/lm_eval" "${ARGS[@]}" 2>&1 | tee "$OUT/lm_eval.log"
stop_server

RESULTS_JSON="$(find "$OUT/raw" -name 'results_*.json' -printf '%T@ %p\n' | sort -n | tail -1 | cut -d' ' -f2-)"
[ -n "$RESULTS_JSON" ] || { echo "lm_eval.sh: lm-eval wrote no results file" >&2; exit 1; }
cp "$RESULTS_JSON" "$OUT/results.json"
"$VENV/bin/python" - "$OUT/results.json" "$OUT/results.md" "$NAME" "$MODEL_DIR" <<'EOF'
import json
import sys

from lm_eval.utils import make_table

src, dst, name, model_dir = sys.argv[1:5]
res = json.load(open(src))
with open(dst, "w") as f:
    f.write(f"# lm-eval: {name}\n\n")
    f.write(f"`radistill serve {model_dir}`, lm-eval {res.get('lm_eval_version', '?')} `local-completions`"
            f" (token-id requests, batch_size=1), {res['config'].get('model_args', '')!s}\n\n")
    f.write(make_table(res) + "\n")
print(f"lm_eval.sh: wrote {dst} and {src}")
EOF
cat "$OUT/results.md"
