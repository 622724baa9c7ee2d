#!/usr/bin/env bash
# Encode throughput of the tokenizer on the King James Bible (Debian's bible-kjv), one thread,
# with the Llama-3 tokenizer.json committed under tests/fixtures/tokenizers/llama3.
# Usage: bench/tokenizer_encode.sh [TOKENIZER_DIR]   (after building build/radistill)
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-tests/fixtures/tokenizers/llama3}
kjv=$(mktemp /tmp/kjv.XXXXXX.txt)
trap 'rm -f "$kjv"' EXIT
bible -f "Gen1:1-Rev22:21" > "$kjv"
echo "corpus: KJV, $(wc -c < "$kjv") bytes; tokenizer: $dir; $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
for run in 1 2 3; do
  ./build/radistill --threads 1 -q tokenize "$dir" --file "$kjv" --time > /dev/null
done
