#!/usr/bin/env bash
# A second build of radistill against a modern libtorch (issue 28): PyPI's torch 2.x wheel, the
# same release the GPU machine runs (torch 2.11.0+cu130), beside the Debian libtorch 1.13 build of
# scripts/test.sh. CI stays on Debian's libtorch.
#
# PyPI's x86-64 torch wheel is a CUDA build (there is no CPU-only torch on PyPI for x86-64). Its
# libtorch_cpu.so also loads on a machine without CUDA, given libcudart.so.13 and libcupti.so.13
# (the nvidia-cuda-runtime and nvidia-cuda-cupti wheels, 13 MB, at the place its RPATH names,
# $ORIGIN/../../nvidia/cu13/lib). The wheel's own CMake config needs the CUDA toolkit, so the build
# here uses cmake/TorchCPUView.cmake (torch_cpu + c10 of the same wheel) as Torch_DIR.
#
# Nothing is written inside the repository but build-torch2/ (ignored). The wheels are unpacked,
# with pip downloading them, into $RAD_TORCH2_PREFIX (default /var/tmp/radistill-torch2):
#   PREFIX/torch/{include,lib,share}   the wheel's libtorch (its Python part is left out)
#   PREFIX/nvidia/cu13/lib             libcudart.so.13, libcupti.so.13
# The system packages are scripts/setup.sh's (Debian's gloo headers, OpenBLAS, ICU, ...).
#
#   bash scripts/setup_torch2.sh [--no-build] [--test [CTEST ARGS...]]
#     --no-build  install and configure only
#     --test      also run build-torch2's test suite (ctest; arguments after --test go to ctest)
# Environment: RAD_TORCH2_PREFIX, RAD_TORCH2_VERSION (2.11.0), RAD_TORCH2_BUILD (build-torch2),
# JOBS (2), NICE (19: the build and tests run under `nice -n $NICE`).
# Idempotent: an installed prefix is reused; re-running rebuilds what changed.
set -euo pipefail
cd "$(dirname "$0")/.."

PREFIX="${RAD_TORCH2_PREFIX:-/var/tmp/radistill-torch2}"
VERSION="${RAD_TORCH2_VERSION:-2.11.0}"
BUILD="${RAD_TORCH2_BUILD:-build-torch2}"
JOBS="${JOBS:-2}"
NICE="${NICE:-19}"
# The CUDA 13.0 runtime pieces libtorch_cpu.so of torch 2.11.0+cu130 is linked against (the
# versions torch's cuda-toolkit==13.0.2 requirement pins).
CUDA_WHEELS=(nvidia-cuda-runtime==13.0.96 nvidia-cuda-cupti==13.0.85)

build=1 test=0 ctest_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --no-build) build=0 ;;
    --test) test=1; shift; ctest_args=("$@"); break ;;
    *) echo "setup_torch2: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

case "$(realpath -m "$PREFIX")/" in
  "$(realpath "$PWD")"/*) echo "setup_torch2: the prefix must lie outside the repository" >&2; exit 2 ;;
esac

bash scripts/setup.sh   # the system packages (gloo headers, OpenBLAS, ICU, PCRE2, fmt, CLI11, ...)
command -v unzip >/dev/null || { apt-get update -qq; apt-get install -y -qq --no-install-recommends unzip; }
command -v ninja >/dev/null || { apt-get update -qq; apt-get install -y -qq --no-install-recommends ninja-build; }

STAMP="$PREFIX/.radistill-torch2"
WANT="torch==$VERSION ${CUDA_WHEELS[*]}"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ] && [ -f "$PREFIX/torch/lib/libtorch_cpu.so" ]; then
  echo "setup_torch2: $PREFIX holds $WANT"
else
  echo "setup_torch2: installing $WANT into $PREFIX"
  mkdir -p "$PREFIX/wheels"
  PIP=(python3 -m pip download --no-deps --only-binary=:all: -d "$PREFIX/wheels")
  # pip picks the wheel for this machine's Python; its C++ half does not depend on it.
  "${PIP[@]}" "torch==$VERSION" "${CUDA_WHEELS[@]}"
  rm -rf "$PREFIX/torch" "$PREFIX/nvidia"
  wheel=$(ls "$PREFIX"/wheels/torch-"$VERSION"-*.whl | head -1)
  unzip -q -o "$wheel" 'torch/include/*' 'torch/lib/*' 'torch/share/*' -d "$PREFIX"
  unzip -q -o "$(ls "$PREFIX"/wheels/nvidia_cuda_runtime-*.whl | head -1)" 'nvidia/cu13/lib/*' -d "$PREFIX"
  unzip -q -o "$(ls "$PREFIX"/wheels/nvidia_cuda_cupti-*.whl | head -1)" 'nvidia/cu13/lib/libcupti.so.13' -d "$PREFIX"
  echo "$WANT" > "$STAMP"
fi
# The CPU view of the wheel's CMake config (refreshed every time: it is the repository's file).
mkdir -p "$PREFIX/torch/share/cmake/TorchCPU"
cp cmake/TorchCPUView.cmake "$PREFIX/torch/share/cmake/TorchCPU/TorchConfig.cmake"

# libtorch_cpu.so must load (its CUDA runtime found through its RPATH) before anything is built.
if ! python3 - "$PREFIX/torch/lib/libtorch_cpu.so" <<'PY'
import ctypes, sys
ctypes.CDLL(sys.argv[1])
PY
then
  echo "setup_torch2: $PREFIX/torch/lib/libtorch_cpu.so does not load (see above)" >&2
  exit 1
fi

TORCH_DIR="$PREFIX/torch/share/cmake/TorchCPU"
# Unity build of the library and CLI, as scripts/test.sh (the tests stay one file per unit).
nice -n "$NICE" cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DTorch_DIR="$TORCH_DIR" \
  -DRAD_HF_PYTHON="$PWD/build-hf-venv/bin/python" -DRAD_UNITY_BUILD=ON
if [ "$build" = 1 ]; then
  nice -n "$NICE" cmake --build "$BUILD" -j "$JOBS"
fi
if [ "$test" = 1 ]; then
  # The transformers venv (over Debian's torch) and the JavaScript client, as scripts/test.sh has them.
  bash scripts/setup_python.sh
  npm ci --prefix tests/js --no-audit --no-fund
  cd "$BUILD" && nice -n "$NICE" ctest --output-on-failure -j "$JOBS" "${ctest_args[@]}"
fi
