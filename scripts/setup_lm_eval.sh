#!/usr/bin/env bash
# The Python environment for lm-evaluation-harness against `radistill serve` (scripts/lm_eval.sh):
# a plain venv (no --system-site-packages) with lm-eval 0.4.13 from PyPI and its whole dependency
# closure pinned exactly in scripts/lm_eval_requirements.txt, installed with --no-deps (no
# resolution at install time). Wheels where PyPI has them; sqlitedict and word2number publish only
# pure-Python source archives, so those two are built from sdists.
#
# No torch: lm-eval 0.4.13 makes torch/transformers optional (its "hf" extra), and the
# `local-completions` model only needs requests/aiohttp/tenacity (its "api" extra) plus a tokenizer
# to count context tokens; transformers 4.45.2 + tokenizers 0.20.3 (the pins of
# scripts/setup_python.sh) load the model directory's tokenizer.json without torch. Debian's
# python3-torch 1.13 is therefore left out of this venv on purpose (its numpy would also clash
# with the pinned pandas/pyarrow/scikit-learn wheels).
#
# Where: $RAD_LMEVAL_VENV, default build-lmeval-venv/ in the repository (ignored by git: /build*/).
# Idempotent: a venv whose stamp equals the requirements file and that imports lm_eval is kept.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${RAD_LMEVAL_VENV:-$PWD/build-lmeval-venv}"
REQS="$PWD/scripts/lm_eval_requirements.txt"
STAMP="$VENV/.radistill-lm-eval-pins"
PY="${RAD_LMEVAL_PYTHON:-/usr/bin/python3}"

if [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] && cmp -s "$STAMP" "$REQS" &&
   "$VENV/bin/python" -c "import lm_eval, lm_eval.models.openai_completions, transformers, tokenizers" >/dev/null 2>&1; then
  echo "setup_lm_eval: $VENV is up to date (lm-eval $("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("lm_eval"))'))"
  exit 0
fi

if ! "$PY" -c "import ensurepip, venv" >/dev/null 2>&1; then
  echo "setup_lm_eval: installing python3-venv"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends python3-venv
fi

echo "setup_lm_eval: creating $VENV"
rm -rf "$VENV"
"$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-input --no-deps --prefer-binary \
  -r "$REQS"
# The closure is complete (every installed package's requirements are met) and lm-eval's API model
# imports without torch.
"$VENV/bin/python" -m pip check --disable-pip-version-check
"$VENV/bin/python" - <<'EOF'
import importlib.metadata as md
import sys
import lm_eval.models.openai_completions  # noqa: F401  (registers local-completions)
import tokenizers, transformers  # noqa: F401
assert "torch" not in sys.modules, "lm-eval's API model should not need torch"
print("setup_lm_eval: lm-eval", md.version("lm_eval"), "transformers", md.version("transformers"),
      "tokenizers", md.version("tokenizers"))
EOF
cp "$REQS" "$STAMP"
echo "setup_lm_eval: ready: $VENV/bin/lm_eval"
