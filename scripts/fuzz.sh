#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, ASan + UBSan) and runs one.
#   scripts/fuzz.sh TARGET SECONDS     TARGET: safetensors | tensor_store | gguf | chat_template | hf_config |
#                                              head_plan | tokenizer_json | tokenizer_encode | user_tasks
# Corpus: tests/fuzz/corpus/TARGET (seeds from the project's fixtures; new finds are added there by
# libFuzzer); crashes go to build-fuzz/crashes/. A finding must become a fixed bug plus a regression
# input under tests/fuzz/regressions/TARGET/, which the normal test suite replays.
set -euo pipefail
cd "$(dirname "$0")/.."
target=${1:?usage: scripts/fuzz.sh TARGET SECONDS}
seconds=${2:-60}
if [ ! -x build-fuzz/fuzz_$target ]; then
  # Debian's clang-14 package installs clang++-14 without the plain name.
  cxx=$(command -v clang++ || command -v clang++-14 || true)
  cc=$(command -v clang || command -v clang-14 || true)
  [ -n "$cxx" ] || { echo "scripts/fuzz.sh: needs clang (apt-get install clang-14)" >&2; exit 1; }
  CXX=$cxx CC=$cc cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DRAD_FUZZ=ON -DRAD_USE_PCH=OFF >/dev/null
  cmake --build build-fuzz -j2 --target fuzz_$target
fi
corpus=build-fuzz/corpus/$target
mkdir -p "$corpus" build-fuzz/crashes
cp -n tests/fuzz/seeds/$target/* "$corpus"/ 2>/dev/null || true
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:allocator_may_return_null=1}
# UBSan findings must stop the run (and leave an artifact) like ASan ones, not scroll past.
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
build-fuzz/fuzz_$target "$corpus" -max_total_time="$seconds" -timeout=1 -rss_limit_mb=2048 -max_len=65536 \
  -artifact_prefix=build-fuzz/crashes/$target- -print_final_stats=1
