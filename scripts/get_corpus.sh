#!/usr/bin/env bash
# Writes the King James Bible (Debian's bible-kjv package, public domain) with verse labels
# stripped, one verse per line: the corpus of the default teacher and of `radistill run`.
#   bash scripts/get_corpus.sh [OUT_FILE]   (default data/kjv.txt)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-data/kjv.txt}
command -v bible >/dev/null || { echo "the 'bible' program is missing: run scripts/setup.sh (apt package bible-kjv)" >&2; exit 1; }
if [ ! -s "$OUT" ]; then
  mkdir -p "$(dirname "$OUT")"
  bible -f "Gen1:1-Rev22:21" | sed -E 's/^\S+ //' > "$OUT.tmp"
  mv "$OUT.tmp" "$OUT"
fi
echo "$OUT: $(wc -l < "$OUT") lines"
