#!/usr/bin/env bash
# Real SmolLM2-135M weights for the GPU check (issue 28). The GGUF (98 MB, scripts/get_smollm2.sh)
# exceeds what one call to the GPU machine carries (64 MiB, the tracked tree's ~26 MiB included), so
# it travels in parts, one part per call, in back-to-back calls (files written there survive only while
# the machine stays in use, about 30 s between commands), and is put together there and checked
# against the whole file's sha256 before `radistill import-gguf`.
#
#   bash scripts/gpu_weights.sh split [GGUF] [PART_MIB]  here: gpu-weights/partN/ (ignored by git),
#                                                         default data/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf, 32 MiB
#   bash scripts/gpu_weights.sh stage [DEST]             there: copy the carried gpu-weights/part*/ into DEST
#                                                         (default /tmp/radistill-weights), each part's sha256 checked
#   bash scripts/gpu_weights.sh assemble [DEST] OUT      the parts in DEST -> OUT; fails unless all are there
#                                                         and the whole matches; prints OUT
# The calls there, each carrying one part (gpu-weights/part1, part2, part3), then the check:
#   run(carry=[gpu-weights/part1]): bash scripts/gpu_check.sh --stage-weights
#   ... part2, part3 ...
#   run(carry=[gpu-bundle]):        bash scripts/gpu_check.sh      (finds the staged parts)
# RAD_GPU_WEIGHTS_DIR replaces gpu-weights (the tests use a temporary folder).
set -euo pipefail
cd "$(dirname "$0")/.."
W=${RAD_GPU_WEIGHTS_DIR:-gpu-weights}
cmd=${1:?usage: gpu_weights.sh split|stage|assemble ...}
shift

case "$cmd" in
  split)
    gguf=${1:-data/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf}
    mib=${2:-32}
    [ -f "$gguf" ] || { echo "gpu_weights: $gguf is missing (bash scripts/get_smollm2.sh)" >&2; exit 1; }
    rm -rf "$W"
    mkdir -p "$W"/tmp
    split -b "$((mib * 1048576))" -d -a 2 "$gguf" "$W"/tmp/chunk.
    whole=$(sha256sum "$gguf" | cut -d' ' -f1)
    n=$(ls "$W"/tmp | wc -l)
    i=0
    for chunk in "$W"/tmp/chunk.*; do
      i=$((i + 1))
      mkdir -p "$W/part$i"
      mv "$chunk" "$W/part$i/$(basename "$gguf").part$i-of-$n"
    done
    rmdir "$W"/tmp
    {
      echo "file $(basename "$gguf") $(stat -c %s "$gguf") $whole"
      for k in $(seq 1 "$n"); do  # in order (part10 after part9)
        p="$W/part$k/$(basename "$gguf").part$k-of-$n"
        echo "part $(basename "$p") $(stat -c %s "$p") $(sha256sum "$p" | cut -d' ' -f1)"
      done
    } > "$W"/MANIFEST
    # Every part carries the manifest: name, size and sha256 of the whole and of each part.
    for d in "$W"/part*/; do cp "$W"/MANIFEST "$d"; done
    for d in "$W"/part*/; do echo "gpu_weights: $d $(du -sb "$d" | cut -f1) bytes"; done
    ;;
  stage)
    dest=${1:-/tmp/radistill-weights}
    mkdir -p "$dest"
    found=0
    for d in "$W"/part*/; do
      [ -d "$d" ] || continue
      cp "$d/MANIFEST" "$dest/MANIFEST"
      for p in "$d"/*.part*; do
        want=$(awk -v n="$(basename "$p")" '$1 == "part" && $2 == n {print $4}' "$d/MANIFEST")
        got=$(sha256sum "$p" | cut -d' ' -f1)
        [ "$want" = "$got" ] || { echo "gpu_weights: $p: sha256 $got, manifest says $want" >&2; exit 1; }
        cp "$p" "$dest/"
        found=$((found + 1))
        echo "gpu_weights: staged $(basename "$p") in $dest"
      done
    done
    [ "$found" -gt 0 ] || { echo "gpu_weights: no gpu-weights/part*/ carried" >&2; exit 1; }
    echo "gpu_weights: $dest holds $(ls "$dest"/*.part* | wc -l) of $(grep -c '^part ' "$dest/MANIFEST") parts"
    ;;
  assemble)
    dest=${1:?assemble DEST OUT}
    out=${2:?assemble DEST OUT}
    [ -f "$dest/MANIFEST" ] || { echo "gpu_weights: $dest/MANIFEST is missing" >&2; exit 1; }
    read -r _ name size whole < <(grep '^file ' "$dest/MANIFEST")
    parts=()
    while read -r _ part _ sha; do
      [ -f "$dest/$part" ] || { echo "gpu_weights: $dest/$part is missing (stage every part first)" >&2; exit 1; }
      parts+=("$dest/$part")
    done < <(grep '^part ' "$dest/MANIFEST")
    mkdir -p "$(dirname "$out")"
    cat "${parts[@]}" > "$out.tmp"
    got=$(sha256sum "$out.tmp" | cut -d' ' -f1)
    [ "$got" = "$whole" ] && [ "$(stat -c %s "$out.tmp")" = "$size" ] ||
      { rm -f "$out.tmp"; echo "gpu_weights: the parts of $name put together have sha256 $got, not $whole" >&2; exit 1; }
    mv "$out.tmp" "$out"
    echo "$out"
    ;;
  *) echo "gpu_weights: unknown command $cmd" >&2; exit 2 ;;
esac
