#!/usr/bin/env bash
# Set up (packages), build and run the whole test suite: the README's test command.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The pinned transformers (a venv over Debian's torch) for the hf_modeling_transformers test.
bash scripts/setup_python.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DRAD_UNITY_BUILD=ON -DRAD_BUILD_TESTS=ON -DRAD_BUILD_BENCH=ON
cmake --build build -j2
# The official openai JavaScript client for the serve test (versions pinned in tests/js/package-lock.json).
npm ci --prefix tests/js --no-audit --no-fund
cd build && ctest --output-on-failure -j2 "$@"
