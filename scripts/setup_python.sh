#!/usr/bin/env bash
# The Python environment for the Hugging Face `transformers` modeling file of radistill hybrids
# (python/modeling_radistill.py) and its test (tests/python/test_hf_modeling.py): a venv over
# Debian's python3-torch 1.13 (--system-site-packages, so torch, numpy, requests, yaml and
# typing-extensions are Debian's) with the PyPI packages below, pinned exactly, installed without
# dependency resolution (--no-deps: the list is the whole closure) from wheels only. Nothing is
# installed outside the venv (but python3-venv with apt when it is missing).
#
# transformers 4.45.2 is the pin: the last releases that work with torch 1.13 on Python 3.11 are
# 4.4x; from 4.46 `generate()` imports torch.distributed.fsdp, which Debian's torch 1.13 cannot
# import on Python 3.11, and 4.48+ require torch >= 2.
#
# Where: $RAD_HF_VENV, default build-hf-venv/ in the repository (ignored by git; CMake's
# RAD_HF_PYTHON points at its python). Idempotent: an up-to-date venv is left as it is.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${RAD_HF_VENV:-$PWD/build-hf-venv}"
PINS=(
  transformers==4.45.2
  tokenizers==0.20.3
  safetensors==0.4.5
  huggingface-hub==0.25.2
  filelock==3.16.1
  fsspec==2024.9.0
  packaging==24.1
  regex==2024.9.11
  tqdm==4.66.5
)
STAMP="$VENV/.radistill-pins"
WANT="${PINS[*]}"

if [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ] &&
   "$VENV/bin/python" -c "import torch, transformers, safetensors, numpy" >/dev/null 2>&1; then
  echo "setup_python: $VENV is up to date (transformers $("$VENV/bin/python" -c 'import transformers; print(transformers.__version__)'))"
  exit 0
fi

if ! /usr/bin/python3 -c "import ensurepip, venv" >/dev/null 2>&1; then
  echo "setup_python: installing python3-venv"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends python3-venv
fi
/usr/bin/python3 -c "import torch, numpy" || {
  echo "setup_python: Debian's python3-torch and python3-numpy are needed first (bash scripts/setup.sh)" >&2
  exit 1
}

echo "setup_python: creating $VENV"
rm -rf "$VENV"
/usr/bin/python3 -m venv --system-site-packages "$VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-input --no-deps --only-binary=:all: \
  "${PINS[@]}"
# Every pinned package and its dependencies resolve (the Debian ones included), and it imports.
"$VENV/bin/python" - <<'EOF'
import importlib.metadata as md
import re
pinned = ["transformers", "tokenizers", "safetensors", "huggingface-hub", "filelock", "fsspec", "packaging",
          "regex", "tqdm"]
missing = []
for name in pinned:
    for req in md.requires(name) or []:
        if ";" in req:  # extras and environment markers: optional dependencies
            continue
        dep = re.split(r"[<>=!~ \[(]", req, maxsplit=1)[0]
        try:
            md.version(dep)
        except md.PackageNotFoundError:
            missing.append(f"{name} needs {req}")
if missing:
    raise SystemExit("setup_python: missing dependencies:\n  " + "\n  ".join(missing))
import torch, transformers, safetensors.torch
from transformers import AutoModelForCausalLM, GenerationMixin
print(f"setup_python: transformers {transformers.__version__}, torch {torch.__version__}")
EOF
echo "$WANT" > "$STAMP"
