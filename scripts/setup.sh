#!/usr/bin/env bash
# Installs every system package radistill needs on a fresh Debian 12 machine (run as root).
# Idempotent: re-running installs nothing new and changes nothing.
#   bash scripts/setup.sh          # everything: build, run, and the tests' references and clients
#   bash scripts/setup.sh --main   # what building radistill and running the main job need (no
#                                  # GoogleTest, python3-torch, npm, curl: ~390 fewer packages)
set -euo pipefail
MAIN_ONLY=0
case "${1:-}" in
  "") ;;
  --main) MAIN_ONLY=1 ;;
  *) echo "setup.sh: unknown argument '$1' (expected nothing or --main)" >&2; exit 2 ;;
esac

PACKAGES=(
  build-essential cmake ccache pkg-config git
  libtorch-dev                                # libtorch 1.13 (C++)
  libgloo-dev                                 # gloo headers for libtorch's c10d ProcessGroupGloo (data-parallel training)
  libopenblas0-openmp libopenblas-openmp-dev  # the BLAS behind libtorch; openmp build so BLAS threads follow libtorch's
  libgoogle-perftools-dev                     # tcmalloc
  nlohmann-json3-dev libfmt-dev libcli11-dev libpcre2-dev
  libicu-dev                                  # Unicode normalization (NFC/NFKC) in the tokenizer
  libcpp-httplib-dev                          # HTTP server of `radistill serve` (header + shared library)
  bible-kjv                                   # public-domain English corpus for the default teacher
)
TEST_PACKAGES=(
  libgtest-dev                                # the test binary
  curl                                        # the serve tests' HTTP client
  python3-torch python3-numpy                 # independent reference for golden test data (tests/python), never a runtime dependency
)
[ "$MAIN_ONLY" = 1 ] || PACKAGES+=("${TEST_PACKAGES[@]}")

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# npm (and node) for the serve test's openai JavaScript client (tests/js): Debian's npm package,
# unless a Node.js install that brings its own npm (e.g. NodeSource's nodejs) is already there.
[ "$MAIN_ONLY" = 1 ] || command -v npm >/dev/null 2>&1 || missing+=(npm)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "setup: all packages present"
fi

# Make sure the openmp OpenBLAS is the libblas libtorch loads (reference BLAS is ~50x slower).
blas=/usr/lib/x86_64-linux-gnu/openblas-openmp/libblas.so.3
if [ -e "$blas" ]; then
  update-alternatives --set libblas.so.3-x86_64-linux-gnu "$blas" >/dev/null
  lapack=/usr/lib/x86_64-linux-gnu/openblas-openmp/liblapack.so.3
  [ -e "$lapack" ] && update-alternatives --set liblapack.so.3-x86_64-linux-gnu "$lapack" >/dev/null || true
fi
