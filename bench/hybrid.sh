#!/usr/bin/env bash
# Hybrid benchmarks (issue 6): SSD forward+backward chunked vs naive, and decode ms/token against
# context length for teacher / hybrid / pure SSM with cache bytes. Prints JSON on stdout, progress
# on stderr. OPENBLAS_CORETYPE is left as the machine sets it (docs/DESIGN.md section 9).
# Usage: bench/hybrid.sh [build dir] [extra bench_hybrid args...]
set -euo pipefail
build=${1:-build}
shift || true
"$build/bench_hybrid" --threads 2 "$@"
