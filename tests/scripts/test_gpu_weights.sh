#!/usr/bin/env bash
# scripts/gpu_weights.sh (issue 28): a file split into parts, staged part by part (as the GPU
# machine receives them, one per call) and put together is the same file; a missing or corrupted
# part is refused. Synthetic data: 5 MB in 1 MiB parts.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/../.." && pwd)
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
export RAD_GPU_WEIGHTS_DIR="$T/w"
fail() { echo "FAIL: $*" >&2; exit 1; }
# corrupt FILE OFFSET: changes the byte at OFFSET. Writing a fixed 'X' left the file as it was when
# the random byte there was already 'X' (1 run in 256 per site: the test failed once that way).
corrupt() {
  local byte new=X
  byte=$(dd if="$1" bs=1 skip="$2" count=1 status=none | od -An -tx1 | tr -d ' \n')
  [ "$byte" = 58 ] && new=Y
  printf '%s' "$new" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}
head -c 5000000 /dev/urandom > "$T/model.gguf"
bash "$REPO/scripts/gpu_weights.sh" split "$T/model.gguf" 1 > /dev/null
[ "$(ls -d "$T"/w/part*/ | wc -l)" = 5 ] || fail "expected 5 parts"
# Parts arrive one per call: stage each alone, as a carried folder would be.
for i in 1 2 3 4 5; do
  mkdir -p "$T/call$i"
  cp -r "$T/w/part$i" "$T/call$i/"
  RAD_GPU_WEIGHTS_DIR="$T/call$i" bash "$REPO/scripts/gpu_weights.sh" stage "$T/dest" > /dev/null
  if [ "$i" = 3 ]; then  # not all there yet: assembling is refused
    if bash "$REPO/scripts/gpu_weights.sh" assemble "$T/dest" "$T/early.gguf" 2> "$T/err"; then fail "assembled from 3 of 5 parts"; fi
    grep -q "is missing" "$T/err" || fail "no 'is missing' in: $(cat "$T/err")"
  fi
done
out=$(bash "$REPO/scripts/gpu_weights.sh" assemble "$T/dest" "$T/out.gguf")
[ "$out" = "$T/out.gguf" ] || fail "assemble printed $out"
cmp "$T/model.gguf" "$T/out.gguf" || fail "reassembled file differs"
# A corrupted part is refused when staged.
corrupt "$T/call2/part2/model.gguf.part2-of-5" 100
if RAD_GPU_WEIGHTS_DIR="$T/call2" bash "$REPO/scripts/gpu_weights.sh" stage "$T/dest2" 2> "$T/err"; then fail "a corrupted part was staged"; fi
grep -q "sha256" "$T/err" || fail "no sha256 in: $(cat "$T/err")"
# A corrupted staged part (after staging) makes the whole fail its sha256.
corrupt "$T/dest/model.gguf.part4-of-5" 7
if bash "$REPO/scripts/gpu_weights.sh" assemble "$T/dest" "$T/bad.gguf" 2> "$T/err"; then fail "assembled a corrupted whole"; fi
[ ! -e "$T/bad.gguf" ] || fail "a corrupted whole was left behind"
echo "gpu_weights: 4 passed, 0 failed"
