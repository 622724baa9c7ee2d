#!/usr/bin/env bash
# The SmolLM2-135M head bank (issue 29): a long background job, one thread, checkpointed every 10
# steps outside the work tree so that any later session on the same machine resumes it.
#   bash scripts/smollm2_bank.sh --background   # start or resume it detached; log in $LOG
#   bash scripts/smollm2_bank.sh                # the same in the foreground
# Needs the build (build/radistill), scripts/get_smollm2.sh and scripts/get_corpus.sh data/kjv.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${SMOLLM2_BANK_DIR:-/var/tmp/radistill/smollm2-bank}
LOG=${SMOLLM2_BANK_LOG:-/var/tmp/radistill/smollm2_bank.log}
mkdir -p "$(dirname "$OUT")" "$(dirname "$LOG")"
if [ "${1:-}" = --background ]; then
  setsid nohup bash "$0" >> "$LOG" 2>&1 < /dev/null &
  echo "scripts/smollm2_bank.sh: running in the background; log: $LOG, checkpoints: $OUT"
  exit 0
fi
# With the kernel's autogroup scheduling (sched_autogroup_enabled = 1, Debian's default) a nice value
# only ranks a process within its own session: a `nice -n 19` job in its own session still takes a
# full share of the CPUs from a build or a timed run in another. Measured here: the niced bank held
# a whole core beside a two-thread `radistill run` until its session's autogroup was set to 19.
# Only done when this script leads its own session (--background), not to an interactive shell's.
if [ "$(cat /proc/sys/kernel/sched_autogroup_enabled 2>/dev/null || echo 0)" = 1 ] &&
   [ "$(ps -o sid= -p $$ | tr -d ' ')" = "$$" ]; then
  echo 19 > /proc/self/autogroup 2>/dev/null || true
fi
RESUME=()
[ -e "$OUT/checkpoints/latest" ] && RESUME=(--resume)
exec nice -n 19 ./build/radistill --threads 1 bank models/smollm2-135m-instruct --corpus data/kjv.txt --out "$OUT" \
  --steps 20000 --batch 4 --seq 256 --lr 1e-3 --save-every 10 --log-every 5 --snapshot-tokens 1M,3M,10M,30M,100M \
  "${RESUME[@]}"
