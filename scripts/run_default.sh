#!/usr/bin/env bash
# The main job on a fresh Debian 12 machine: install, build, get the corpus, and run the whole
# pipeline on the shipped default teacher (models/default-teacher). Outputs go to runs/main/;
# re-running resumes. Extra arguments go to `radistill run` (e.g. --quick).
#   [THREADS=1] bash scripts/run_default.sh [--quick] [...]   (THREADS=1 on a machine shared with other work)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
cmake --build build -j2 --target radistill
bash scripts/get_corpus.sh data/kjv.txt
./build/radistill env
# The default teacher learned its lookup from task rows (it is a weak language model on the KJV), so
# its students are distilled on its own mix: half corpus, half MQAR/KV rows on the *training* keys
# (evaluation uses held-out keys; every student gets the same rows). Corpus text alone leaves even
# the top-8 hybrid at 0% (bench/RESULTS.md). On this 6-layer teacher the default 3% plan (2 heads)
# is not enough and 8 heads are, so the heads sweep (paper Table 1) runs by default. 100 + 100
# steps per student keep the run near 45 minutes; the fixed attention init needs no more here.
# The d_state sweep is the paper's Table 4. The evaluation's needles stop at 200 filler words: this
# teacher never learned the needle format (0% at every length; such tasks are excluded from coverage)
# and the 600-word needles are the evaluation's longest sequences.
./build/radistill ${THREADS:+--threads "$THREADS"} run --corpus data/kjv.txt --out runs/main --task-share 0.5 \
  --heads-sweep 4,8,16 --dstate-sweep --align-steps 100 --kd-steps 100 --shrink-align-steps 50 --shrink-kd-steps 50 \
  --eval-needle-words 200 "$@"
echo "report: runs/main/report.md"
