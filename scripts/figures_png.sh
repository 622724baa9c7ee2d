#!/usr/bin/env bash
# Renders a run's figures to PNG, to look at them as a reader will (issue 32) and to keep reference
# pictures under docs/figures/.
#   scripts/figures_png.sh RUN_DIR [OUT_DIR]     (default OUT_DIR: RUN_DIR/png)
# Figures: RUN_DIR/{accuracy_vs_heads,memory,kept_heads}.svg (the run report), RUN_DIR/heads/{heads,causal}.svg
# (`radistill heads`), RUN_DIR/select/sufficiency.svg (`radistill select`, with --budget auto).
# To redraw a finished run's report figures without training again, re-run its `radistill run`
# command: every stage is marked done in RUN_DIR/stages/, so only the report (and its figures) is
# written anew. Needs rsvg-convert (Debian: librsvg2-bin).
set -euo pipefail
run=${1:?usage: scripts/figures_png.sh RUN_DIR [OUT_DIR]}
out=${2:-$run/png}
command -v rsvg-convert >/dev/null || { echo "scripts/figures_png.sh: needs rsvg-convert (apt-get install librsvg2-bin)" >&2; exit 1; }
mkdir -p "$out"
n=0
for f in accuracy_vs_heads memory kept_heads heads/heads heads/causal select/sufficiency; do
  [ -f "$run/$f.svg" ] || continue
  rsvg-convert --background-color=white -o "$out/$(basename "$f").png" "$run/$f.svg"
  n=$((n + 1))
done
[ "$n" -gt 0 ] || { echo "scripts/figures_png.sh: no figures in $run" >&2; exit 1; }
echo "wrote $n PNG files to $out"
