#!/usr/bin/env bash
# Set up, build and run the current main job: a demonstration on a test fixture until the shipped
# default teacher and `radistill run` land.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
cmake --build build -j2 --target radistill
model=tests/fixtures/models/llama_gqa
set -x
./build/radistill env
./build/radistill inspect "$model"
./build/radistill forward "$model" --token-ids 1,5,9,13
./build/radistill generate "$model" --token-ids 1,5,9,13 --max-new-tokens 8 --ignore-eos
