#!/usr/bin/env bash
# llama.cpp against radistill's runtime on the same teacher (issue 15): the teacher is written with
# `radistill export-gguf` (f32 matrices, so both engines read the same float32 weights) and timed
# with llama.cpp's own `llama-bench`; `radistill bench` times the teacher, a hybrid made from it
# (3 heads kept, d_state = the head dim), the shrunk hybrid (d_state 4) and the
# pure SSM (no kept head), which llama.cpp cannot run. Same prompt lengths, same 128 generated
# tokens, same thread counts, back to back; `uptime` before each block puts the load on record.
#
# llama-bench's tg test decodes at the depth given by -d (tokens already in the context), which is
# what `radistill bench` reports as tg after a prompt of that length.
#
# Usage: LLAMA_BENCH=/path/to/llama-bench [REPS=n] bench/llamacpp_vs_runtime.sh [build] [threads,..] [prompts] [gen]
# Building llama-bench without git or network (what bench/RESULTS.md used): llama.cpp's sources are
# vendored in PyPI's llama-cpp-python sdist:
#   pip download --no-deps --no-binary :all: llama-cpp-python -d /tmp/lcp
#   tar xzf /tmp/lcp/llama_cpp_python-*.tar.gz -C /tmp/lcp
#   cmake -S /tmp/lcp/llama_cpp_python-*/vendor/llama.cpp -B /tmp/lcp/build -DCMAKE_BUILD_TYPE=Release \
#     -DGGML_NATIVE=ON -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DBUILD_SHARED_LIBS=OFF -DLLAMA_BUILD_TESTS=OFF \
#     -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF && cmake --build /tmp/lcp/build -j2 --target llama-bench
set -euo pipefail
build=${1:-build}
threads=${2:-1,2}
prompts=${3:-128,4096}
gen=${4:-128}
reps=${REPS:-3}
teacher=${TEACHER:-models/default-teacher}
llama_bench=${LLAMA_BENCH:?set LLAMA_BENCH to a llama-bench binary}
work=${WORK:-$(mktemp -d /tmp/radistill-bench-llamacpp.XXXXXX)}
mkdir -p "$work"
cli="$build/radistill -q"

echo '{"kept_heads": [[0, 3], [2, 7], [4, 5]]}' >"$work/plan3.json"
echo '{"kept_heads": []}' >"$work/plan0.json"
[ -f "$work/teacher-f32.gguf" ] || $cli export-gguf "$teacher" "$work/teacher-f32.gguf" --dtype f32 >&2
[ -d "$work/hybrid" ] || $cli convert "$teacher" --plan "$work/plan3.json" --out "$work/hybrid" >&2
[ -d "$work/hybrid-shrunk" ] || $cli convert "$teacher" --plan "$work/plan3.json" --d-state 4 --out "$work/hybrid-shrunk" >&2
[ -d "$work/ssm" ] || $cli convert "$teacher" --plan "$work/plan0.json" --out "$work/ssm" >&2

load() { uptime | sed 's/.*load average: //'; }
for t in ${threads//,/ }; do
  echo "# $(date -u +%FT%TZ) load: $(load) llama.cpp teacher-f32.gguf threads=$t"
  # -p: prompt processing at the listed lengths; -n with -d: decode after that many context tokens.
  "$llama_bench" -m "$work/teacher-f32.gguf" -t "$t" -p "$prompts" -n 0 -r "$reps" -o json
  "$llama_bench" -m "$work/teacher-f32.gguf" -t "$t" -p 0 -n "$gen" -d "$prompts" -r "$reps" -o json
  for model in "$teacher" "$work/hybrid" "$work/hybrid-shrunk" "$work/ssm"; do
    echo "# $(date -u +%FT%TZ) load: $(load) radistill runtime $model threads=$t"
    $cli --threads "$t" bench "$model" --prompt "$prompts" --gen "$gen" --reps "$reps" --json
  done
done
