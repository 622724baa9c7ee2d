#!/usr/bin/env bash
# The main job on a fresh Debian 12 machine: install, build, get the corpus, and run the whole
# pipeline on the shipped default teacher (models/default-teacher). Outputs go to runs/main/;
# re-running resumes. Extra arguments go to `radistill run` (e.g. --quick).
#   bash scripts/run_default.sh [--quick] [...]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
cmake --build build -j2 --target radistill
bash scripts/get_corpus.sh data/kjv.txt
./build/radistill env
./build/radistill run --corpus data/kjv.txt --out runs/main "$@"
echo "report: runs/main/report.md"
