#!/usr/bin/env bash
# The prepared GPU check (issue 28): one command on the GPU machine (one H100/H200, torch
# 2.11.0+cu130 in /opt/torch/.venv, CMake, ninja, nvcc; no package registry), and the same command
# here on the CPU (--device cpu) so that it keeps working where there is no GPU.
#
#   1. the libraries the machine lacks, from gpu-bundle/ (scripts/gpu_bundle.sh), unpacked to /tmp;
#   2. configure and build against the machine's own torch (ninja, all cores), -DRAD_CUDA=ON;
#   3. the device tests and the data-parallel tests (radistill_tests);
#   4. CUDA against CPU: forward logits (float32, bfloat16), one distill step's losses, gradient
#      norm and updated weights (float32 and bf16 autocast), the head sweep's ranking on the default
#      teacher;
#   5. a SmolLM2-shaped model distilled for a fixed time (random weights made there, or the real
#      SmolLM2-135M if its parts were staged, scripts/gpu_weights.sh): tokens/s, peak memory and the
#      projected hours per billion tokens.
# Everything it prints goes to $OUT/gpu_check.log too, each result as a JSON line to
# $OUT/gpu_check.jsonl and the summary to $OUT/summary.json, beside environment.txt, build.log,
# tests.log and throughput_metrics.jsonl (7 files: the device tool returns at most 8) ($OUT: the device tool's output folder
# there; here --out, default /tmp/radistill-gpu-check). A failed step is recorded and the next runs;
# the exit status is 1 when any failed.
#
#   bash scripts/gpu_check.sh                       on the GPU machine (carry gpu-bundle)
#   bash scripts/gpu_check.sh --stage-weights       there: stage the carried gpu-weights/partN (one per call)
#   bash scripts/gpu_check.sh --device cpu          here: the torch 2.x wheel of scripts/setup_torch2.sh
#                                                   and the bundle, built into build-gpu-check/
# Options: --device cuda|cpu, --seconds S (180), --batch B, --seq T, --build-dir D (build-gpu-check),
#   --skip-build (use D as it is, e.g. build-torch2 here), --deps bundle|system (bundle),
#   --torch-dir DIR (Torch_DIR), --layers N (fewer layers of the SmolLM2 shape, for a slow CPU),
#   --skip STEP,... (tests, parity, throughput), --configure-only (stop after CMake's configure: checks
#   the bundle's plumbing), --out DIR.
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD

DEVICE=cuda SECS=180 BATCH="" SEQ="" BUILD=build-gpu-check SKIP_BUILD=0 DEPS=bundle TORCH_DIR="" LAYERS=0
STAGE=0 SKIP="" CONFIGURE_ONLY=0 OUTDIR="${OUT:-/tmp/radistill-gpu-check}"
while [ $# -gt 0 ]; do
  case "$1" in
    --device) DEVICE=$2; shift ;;
    --seconds) SECS=$2; shift ;;
    --batch) BATCH=$2; shift ;;
    --seq) SEQ=$2; shift ;;
    --build-dir) BUILD=$2; shift ;;
    --skip-build) SKIP_BUILD=1 ;;
    --configure-only) CONFIGURE_ONLY=1 ;;
    --deps) DEPS=$2; shift ;;
    --torch-dir) TORCH_DIR=$2; shift ;;
    --layers) LAYERS=$2; shift ;;
    --skip) SKIP=$2; shift ;;
    --out) OUTDIR=$2; shift ;;
    --stage-weights) STAGE=1 ;;
    *) echo "gpu_check: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
case "$DEVICE" in cpu|cuda) ;; *) echo "gpu_check: --device cpu or cuda" >&2; exit 2 ;; esac
if [ "$DEVICE" = cuda ]; then BATCH=${BATCH:-16} SEQ=${SEQ:-1024}; else BATCH=${BATCH:-1} SEQ=${SEQ:-128}; fi

if [ "$STAGE" = 1 ]; then exec bash scripts/gpu_weights.sh stage /tmp/radistill-weights; fi

mkdir -p "$OUTDIR"
LOG=$OUTDIR/gpu_check.log JSONL=$OUTDIR/gpu_check.jsonl
: > "$JSONL"
exec > >(tee -a "$LOG") 2>&1
W=$(mktemp -d /tmp/radistill-gpu-check.XXXXXX)   # scratch: models, runs (KEEP_WORK=1 keeps it)
[ "${KEEP_WORK:-0}" = 1 ] || trap 'rm -rf "$W"' EXIT
PY=python3
[ "$DEVICE" = cpu ] && [ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import numpy' 2>/dev/null && PY=/usr/bin/python3
T0=$(date +%s)
failed=()
say() { echo "[gpu_check +$(( $(date +%s) - T0 ))s] $*"; }
record() {  # record NAME STATUS SECONDS [JSON]
  local extra=${4:-"{}"}
  $PY - "$1" "$2" "$3" "$extra" >> "$JSONL" <<'PY'
import json, sys
name, status, secs, extra = sys.argv[1:5]
try:
    extra = json.loads(extra)
except json.JSONDecodeError:
    extra = {"detail": extra}
print(json.dumps({"step": name, "status": status, "seconds": int(secs), **extra}))
PY
  [ "$2" = ok ] || failed+=("$1")
  say "$1: $2"
}
skipped() { [[ ",$SKIP," == *",$1,"* ]]; }

say "device $DEVICE, seconds $SECS, batch $BATCH, seq $SEQ, out $OUTDIR"
{
  uname -a; nproc; free -g | head -2
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python3 -c 'import torch; print("python torch", torch.__version__, "cuda", torch.version.cuda)' 2>/dev/null || true
  command -v nvcc >/dev/null && nvcc --version | tail -1
  cmake --version | head -1; ninja --version 2>/dev/null; c++ --version | head -1
} 2>&1 | tee "$OUTDIR/environment.txt"

# --- 1. dependencies ------------------------------------------------------------------------------
CMAKE_DEPS=()
if [ "$DEPS" = bundle ]; then
  t=$(date +%s)
  B=${RAD_BUNDLE_ROOT:-/tmp/radistill-gpu-deps}
  archive=gpu-bundle/radistill-gpu-deps.tar.xz
  want=$(awk '/radistill-gpu-deps.tar.xz/ {print $1}' gpu-bundle/MANIFEST 2>/dev/null)
  if [ ! -f "$archive" ]; then
    record bundle failed 0 '{"detail": "gpu-bundle/radistill-gpu-deps.tar.xz is missing: run scripts/gpu_bundle.sh here and carry gpu-bundle"}'
    exit 1
  fi
  if [ "$(cat "$B/.sha256" 2>/dev/null)" != "$want" ]; then
    rm -rf "$B" && mkdir -p "$B"
    got=$(sha256sum "$archive" | cut -d' ' -f1)
    [ "$got" = "$want" ] || { record bundle failed 0 "{\"detail\": \"sha256 $got, MANIFEST says $want\"}"; exit 1; }
    # xz may be missing there: python's tarfile reads it too.
    tar -xJf "$archive" -C "$B" 2>/dev/null || python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' "$archive" "$B"
    echo "$want" > "$B/.sha256"
  fi
  BL=$B/usr/lib/x86_64-linux-gnu
  export LD_LIBRARY_PATH="$BL:$BL/openblas-openmp${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  export PKG_CONFIG_LIBDIR="$BL/pkgconfig:$B/usr/share/pkgconfig:$BL/openblas-openmp/pkgconfig"
  export PKG_CONFIG_PATH=$PKG_CONFIG_LIBDIR
  CMAKE_DEPS=(-DCMAKE_PREFIX_PATH="$B/usr" -DPKG_CONFIG_EXECUTABLE="$B/usr/bin/pkgconf"
              -DCMAKE_CXX_STANDARD_INCLUDE_DIRECTORIES="$B/usr/include;$B/usr/include/x86_64-linux-gnu")
  record bundle ok $(( $(date +%s) - t )) "{\"root\": \"$B\", \"bytes\": $(du -sb "$B" | cut -f1)}"
fi

# The corpus (the KJV of scripts/get_corpus.sh): data/kjv.txt here, the bundle's copy there.
if [ -s data/kjv.txt ]; then
  cp data/kjv.txt "$W/corpus.txt"
elif [ -s gpu-bundle/kjv.txt.xz ]; then
  python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' \
    gpu-bundle/kjv.txt.xz "$W/corpus.txt"
else
  record corpus failed 0 '{"detail": "no data/kjv.txt nor gpu-bundle/kjv.txt.xz"}'
  exit 1
fi

# --- 2. build --------------------------------------------------------------------------------------
if [ -z "$TORCH_DIR" ]; then
  if [ "$DEVICE" = cuda ]; then
    TORCH_DIR=$(python3 -c 'import os, torch; print(os.path.join(torch.utils.cmake_prefix_path, "Torch"))')
  else
    TORCH_DIR=${RAD_TORCH2_PREFIX:-/var/tmp/radistill-torch2}/torch/share/cmake/TorchCPU
  fi
fi
if [ "$SKIP_BUILD" = 0 ]; then
  t=$(date +%s)
  cuda_args=()
  if [ "$DEVICE" = cuda ]; then
    cuda_args=(-DRAD_CUDA=ON)
    # The wheel's Caffe2 config enables CMake's CUDA language and FindCUDA: point both at one nvcc.
    nvcc=$(command -v nvcc || ls /usr/local/cuda/bin/nvcc /usr/local/cuda-*/bin/nvcc 2>/dev/null | head -1)
    if [ -n "$nvcc" ]; then
      root=$(dirname "$(dirname "$(readlink -f "$nvcc")")")
      cuda_args+=(-DCMAKE_CUDA_COMPILER="$root/bin/nvcc" -DCUDAToolkit_ROOT="$root" -DCUDA_TOOLKIT_ROOT_DIR="$root")
    fi
    # c10d's ProcessGroupNCCL.hpp includes <nccl.h>, which the torch wheel leaves to the nvidia-nccl
    # wheel beside it (site-packages/nvidia/nccl/include); its config does not name that folder.
    site=$(python3 -c 'import os, torch; print(os.path.dirname(os.path.dirname(torch.__file__)))')
    nccl_h=$(find "$site/nvidia" -name nccl.h -path '*/include/*' 2>/dev/null | head -1)
    if [ -n "$nccl_h" ]; then
      inc=$(dirname "$nccl_h")
      if [ "${#CMAKE_DEPS[@]}" -gt 0 ]; then
        CMAKE_DEPS[2]="${CMAKE_DEPS[2]};$inc"   # -DCMAKE_CXX_STANDARD_INCLUDE_DIRECTORIES=...
      else
        CMAKE_DEPS=(-DCMAKE_CXX_STANDARD_INCLUDE_DIRECTORIES="$inc")
      fi
    else
      echo "gpu_check: no nccl.h under $site/nvidia: the build will fail in process_group.cpp"
    fi
  fi
  launcher=()
  command -v ccache >/dev/null || launcher=(-DCCACHE_PROGRAM=CCACHE_PROGRAM-NOTFOUND)
  if [ "$CONFIGURE_ONLY" = 1 ]; then
    if cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DTorch_DIR="$TORCH_DIR" -DRAD_BUILD_BENCH=OFF \
         "${cuda_args[@]}" "${CMAKE_DEPS[@]}" "${launcher[@]}" > "$OUTDIR/build.log" 2>&1; then
      record configure ok $(( $(date +%s) - t )) "{\"torch_dir\": \"$TORCH_DIR\"}"
      exit 0
    fi
    tail -30 "$OUTDIR/build.log"
    record configure failed $(( $(date +%s) - t )) "{\"torch_dir\": \"$TORCH_DIR\"}"
    exit 1
  fi
  if cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DTorch_DIR="$TORCH_DIR" -DRAD_BUILD_BENCH=OFF \
       "${cuda_args[@]}" "${CMAKE_DEPS[@]}" "${launcher[@]}" > "$OUTDIR/build.log" 2>&1 &&
     ${NICE_BUILD:-} cmake --build "$BUILD" -j "${JOBS:-$(nproc)}" >> "$OUTDIR/build.log" 2>&1; then
    record build ok $(( $(date +%s) - t )) "{\"torch_dir\": \"$TORCH_DIR\"}"
  else
    grep -v '^\[' "$OUTDIR/build.log" | tail -60
    record build failed $(( $(date +%s) - t )) "{\"torch_dir\": \"$TORCH_DIR\"}"
    exit 1
  fi
fi
case "$BUILD" in /*) BDIR=$BUILD ;; *) BDIR=$REPO/$BUILD ;; esac
RAD=$BDIR/radistill
TESTS=$BDIR/radistill_tests
[ -x "$RAD" ] || { record build failed 0 "{\"detail\": \"$RAD is missing\"}"; exit 1; }
"$RAD" env >> "$OUTDIR/environment.txt" 2>&1 || true

# --- 3. device and data-parallel tests -------------------------------------------------------------
if ! skipped tests; then
  t=$(date +%s)
  filter='Device.*:DistEnv.*:DistShard.*:ProcessGroup.*:Launch.*:DataParallel.*'
  if (cd "$REPO" && OMP_NUM_THREADS=2 "$TESTS" --gtest_filter="$filter" > "$OUTDIR/tests.log" 2>&1); then status=ok; else status=failed; fi
  grep -E '^\[  (PASSED|FAILED|SKIPPED) ' "$OUTDIR/tests.log" | head -40
  record tests "$status" $(( $(date +%s) - t )) \
    "{\"passed\": $(grep -c '^\[       OK \]' "$OUTDIR/tests.log"), \"failed\": $(grep -c '^\[  FAILED  \] [A-Za-z]*\.[A-Za-z]* (' "$OUTDIR/tests.log")}"
fi

# --- 4. CUDA against CPU -----------------------------------------------------------------------------
TEACHER=models/default-teacher
cmp_json() { "$PY" scripts/gpu_check.py "$@" 2>&1 | tail -1; }
if ! skipped parity; then
  t=$(date +%s)
  TEXT="In the beginning God created the heaven and the earth. And the earth was without form, and void; and darkness was upon the face of the deep."
  for dt in float32 bfloat16; do
    t=$(date +%s)
    for tag in cpu got; do  # the CPU reference, then the device under test (the CPU too with --device cpu)
      d=cpu; [ "$tag" = got ] && d=$DEVICE
      "$RAD" -q --device "$d" forward "$TEACHER" --text "$TEXT" --dtype "$dt" --dump-logits "$W/logits_${dt}_$tag.npy" > /dev/null
    done
    bound=1e-3; [ "$dt" = bfloat16 ] && bound=0.5
    res=$(cmp_json logits "$W/logits_${dt}_cpu.npy" "$W/logits_${dt}_got.npy" --label "forward $dt" --max-abs $bound --min-argmax 0.9)
    echo "$res"
    record "parity_forward_$dt" "$(echo "$res" | grep -q '"ok": true' && echo ok || echo failed)" $(( $(date +%s) - t )) "$res"
  done

  # One distill step from the same student, the same batch: losses, gradient norm, updated weights.
  echo '{"kept_heads": [[0, 4], [2, 2], [3, 3]]}' > "$W/plan.json"
  "$RAD" -q convert "$TEACHER" --plan "$W/plan.json" --out "$W/student0" > /dev/null
  for mode in fp32 bf16; do
    t=$(date +%s)
    flag=(); [ "$mode" = bf16 ] && flag=(--bf16)
    for tag in cpu got; do  # the CPU reference, then the device under test (the CPU too with --device cpu)
      d=cpu; [ "$tag" = got ] && d=$DEVICE
      "$RAD" -q --device "$d" --threads 2 distill --teacher "$TEACHER" --student "$W/student0" --corpus "$W/corpus.txt" \
        --out "$W/step_${mode}_$tag" --align-steps 0 --kd-steps 1 --log-every 1 --eval-every 1000000 --batch 4 --seq 128 "${flag[@]}" \
        > "$W/step_${mode}_$tag.log" 2>&1 || tail -5 "$W/step_${mode}_$tag.log"
    done
    loss_rel=1e-4 grad_rel=1e-3; [ "$mode" = bf16 ] && loss_rel=2e-2 grad_rel=5e-2
    res=$(cmp_json step "$W/step_${mode}_cpu" "$W/step_${mode}_got" --label "distill step $mode" \
            --ref-model "$W/step_${mode}_cpu" --got-model "$W/step_${mode}_got" --init-model "$W/student0" \
            --max-loss-rel $loss_rel --max-grad-rel $grad_rel --max-flip 0.05)
    echo "$res"
    record "parity_distill_step_$mode" "$(echo "$res" | grep -q '"ok": true' && echo ok || echo failed)" $(( $(date +%s) - t )) "$res"
  done

  t=$(date +%s)
  for tag in cpu got; do
    d=cpu; [ "$tag" = got ] && d=$DEVICE
    "$RAD" -q --device "$d" heads "$TEACHER" --out "$W/heads_$tag" --examples 64 --random-draws 1 --causal-examples 32 \
      > "$W/heads_$tag.log" 2>&1 || tail -5 "$W/heads_$tag.log"
  done
  res=$(cmp_json heads "$W/heads_cpu/heads.json" "$W/heads_got/heads.json" --top 3 --min-spearman 0.9)
  echo "$res"
  record parity_head_ranking "$(echo "$res" | grep -q '"ok": true' && echo ok || echo failed)" $(( $(date +%s) - t )) "$res"
fi

# --- 5. a SmolLM2-shaped model, distilled for a fixed time ------------------------------------------
if ! skipped throughput; then
  t=$(date +%s)
  teacher_kind=random
  gguf=""
  if [ -f /tmp/radistill-weights/MANIFEST ]; then
    gguf=$(bash scripts/gpu_weights.sh assemble /tmp/radistill-weights "$W/smollm2.gguf") || gguf=""
  elif [ -f gpu-weights/MANIFEST ] && ls gpu-weights/part*/ >/dev/null 2>&1; then
    bash scripts/gpu_weights.sh stage "$W/weights" > /dev/null &&
      gguf=$(bash scripts/gpu_weights.sh assemble "$W/weights" "$W/smollm2.gguf") || gguf=""
  fi
  if [ -n "$gguf" ] && "$RAD" -q import-gguf "$gguf" "$W/smollm2" > "$W/import.log" 2>&1; then
    teacher_kind=smollm2-135m-instruct
  else
    [ -n "$gguf" ] && { echo "import-gguf failed:"; tail -5 "$W/import.log"; }
    layer_args=(); [ "$LAYERS" -gt 0 ] && layer_args=(--layers "$LAYERS")
    "$PY" scripts/gpu_check.py random-llama "$W/smollm2" --tokenizer "$TEACHER" --dtype f32 "${layer_args[@]}"
  fi
  n_layer=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["num_hidden_layers"])' "$W/smollm2/config.json")
  # About 2% of the heads kept as attention: head 0 of every fifth layer.
  "$PY" -c 'import json,sys; n=int(sys.argv[1]); print(json.dumps({"kept_heads": [[l, 0] for l in range(0, n, 5)]}))' \
    "$n_layer" > "$W/plan_smollm2.json"
  "$RAD" -q convert "$W/smollm2" --plan "$W/plan_smollm2.json" --out "$W/smollm2_student" > "$W/convert.log" 2>&1 ||
    tail -5 "$W/convert.log"
  flag=(); [ "$DEVICE" = cuda ] && flag=(--bf16 --teacher-dtype bfloat16)
  peak_file=$W/peak_mib
  echo 0 > "$peak_file"
  # The fixed time counts from the first metrics line (after loading and tokenizing the corpus);
  # loading may take up to STARTUP_S (300) seconds.
  "$RAD" --device "$DEVICE" distill --teacher "$W/smollm2" --student "$W/smollm2_student" \
    --corpus "$W/corpus.txt" --out "$W/throughput" --align-steps 0 --kd-steps 100000000 --log-every 5 --save-every 100000000 --eval-every 100000000 \
    --batch "$BATCH" --seq "$SEQ" "${flag[@]}" > "$W/throughput.log" 2>&1 &
  pid=$!
  launched=$(date +%s) measuring=0 rc=0 stopped=0
  while kill -0 "$pid" 2>/dev/null; do  # peak memory: the GPU's (nvidia-smi) or the process's resident set
    if [ "$DEVICE" = cuda ]; then
      m=$(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits 2>/dev/null | head -1)
    else
      m=$(awk '/VmHWM/ {print int($2 / 1024)}' "/proc/$pid/status" 2>/dev/null)
    fi
    [ -n "${m:-}" ] && [ "$m" -gt "$(cat "$peak_file")" ] && echo "$m" > "$peak_file"
    now=$(date +%s)
    if [ "$measuring" = 0 ] && [ -s "$W/throughput/metrics.jsonl" ]; then measuring=$now; say "first metrics line after $((now - launched)) s"; fi
    if { [ "$measuring" != 0 ] && [ $((now - measuring)) -ge "$SECS" ]; } ||
       { [ "$measuring" = 0 ] && [ $((now - launched)) -ge "${STARTUP_S:-300}" ]; }; then
      kill -TERM "$pid" 2>/dev/null; stopped=1; break
    fi
    sleep 1
  done
  wait "$pid" || rc=$?
  [ "$stopped" = 1 ] && rc=124
  tail -3 "$W/throughput.log"
  cp "$W/throughput/metrics.jsonl" "$OUTDIR/throughput_metrics.jsonl" 2>/dev/null
  res=$(cmp_json throughput "$W/throughput/metrics.jsonl" --seconds "$SECS" --skip 1)
  echo "$res"
  status=failed
  { [ "$rc" = 124 ] || [ "$rc" = 0 ]; } && echo "$res" | grep -q '"ok": true' && status=ok
  mem_key=peak_gpu_memory_mib; [ "$DEVICE" = cpu ] && mem_key=peak_rss_mib
  record throughput "$status" $(( $(date +%s) - t )) "$("$PY" -c '
import json, sys
r = json.loads(sys.argv[1]) if sys.argv[1].startswith("{") else {"detail": sys.argv[1]}
r.update({"teacher": sys.argv[2], sys.argv[3]: int(sys.argv[4]), "batch": int(sys.argv[5]), "seq": int(sys.argv[6]), "device": sys.argv[7]})
print(json.dumps(r))' "$res" "$teacher_kind" "$mem_key" "$(cat "$peak_file")" "$BATCH" "$SEQ" "$DEVICE")"
fi

# --- summary ---------------------------------------------------------------------------------------
"$PY" - "$JSONL" "$OUTDIR/summary.json" <<'PY'
import json, sys
steps = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
json.dump({"steps": steps, "failed": [s["step"] for s in steps if s["status"] != "ok"]}, open(sys.argv[2], "w"), indent=1)
for s in steps:
    keys = {k: v for k, v in s.items() if k in ("max_abs", "argmax_agreement", "loss_rel", "grad_norm_rel",
            "update_sign_disagreement", "top_same_set", "spearman", "tokens_per_s", "hours_per_billion_tokens",
            "peak_gpu_memory_mib", "peak_rss_mib", "teacher", "passed", "failed")}
    print(f"{s['step']:<28} {s['status']:<7} {s['seconds']:>5} s  {json.dumps(keys)}")
PY
say "done in $(( $(date +%s) - T0 )) s; failed: ${failed[*]:-none}"
[ "${#failed[@]}" = 0 ]
