#!/usr/bin/env bash
# Greedy text of quantised SmolLM2-135M-Instruct against its F16 weights, on radistill's runtime and on
# llama.cpp side by side (issue 30): for each prompt, 32 greedy tokens from the F16 GGUF and from the
# Q8_0 / Q4_0 files `radistill quantize` wrote (bench/smollm2_vs_llamacpp.sh makes all three) and, when
# it is there, smollm2-q4_k_m.gguf (llama.cpp's `llama-quantize smollm2-f16.gguf smollm2-q4_k_m.gguf
# Q4_K_M`: Q4_K/Q6_K where rows are whole 256-value super-blocks, Q5_0/Q8_0 where not), each engine
# running the same files; prints whether each quantised continuation equals that engine's F16
# one and, if not, after how many characters it departs.
#
# Usage: LLAMA_COMPLETION=/path/to/llama-completion bench/quantized_text.sh [build]
# llama-completion: the `llama-completion` target of the llama.cpp build bench/llamacpp_vs_runtime.sh
# describes (`make llama-completion` in that build directory).
set -euo pipefail
build=${1:-build}
work=${WORK:-/var/tmp/radistill-smollm2-bench}
llama=${LLAMA_COMPLETION:?set LLAMA_COMPLETION to a llama-completion binary}
n=${N:-32}
prompts=("The capital of France is" "Once upon a time, in a small village," "def fibonacci(n):"
         "The three primary colors are" "To make a cup of tea, first")
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
types=(f16 q8_0 q4_0)
[ -f "$work/smollm2-q4_k_m.gguf" ] && types+=(q4_k_m)
for q in "${types[@]}"; do
  f="$work/smollm2-$q.gguf"
  [ -f "$f" ] || { echo "$f is missing: run bench/smollm2_vs_llamacpp.sh first" >&2; exit 1; }
  for i in "${!prompts[@]}"; do
    "$build/radistill" -q --threads 1 generate "$f" --text "${prompts[$i]}" --max-new-tokens "$n" --ignore-eos \
      > "$out/radistill-$q-$i.txt"
    # -no-cnv: plain completion; --temp 0: greedy; the prompt is echoed, so it is cut off below.
    "$llama" -m "$f" -p "${prompts[$i]}" -n "$n" --temp 0 -t 1 -no-cnv --ignore-eos --no-warmup 2>/dev/null \
      > "$out/llama-$q-$i.txt" < /dev/null
  done
done
python3 - "$out" "${#prompts[@]}" "${types[*]:1}" "${prompts[@]}" <<'PY'
import sys
d, k, quants, prompts = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(), sys.argv[4:]
def read(p): return open(p, encoding="utf-8", errors="replace").read()
print("| engine | type | prompt | same as its F16 | departs after (chars) | continuation |")
print("|---|---|---|---|---:|---|")
for engine in ("radistill", "llama"):
    for q in quants:
        for i in range(k):
            ref, got = read(f"{d}/{engine}-f16-{i}.txt"), read(f"{d}/{engine}-{q}-{i}.txt")
            if engine == "llama":  # llama-completion echoes the prompt
                ref, got = ref.removeprefix(prompts[i]), got.removeprefix(prompts[i])
            same = ref.strip() == got.strip()
            common = next((j for j, (a, b) in enumerate(zip(ref, got)) if a != b), min(len(ref), len(got)))
            name = "llama.cpp" if engine == "llama" else engine
            print(f"| {name} | {q.upper()} | {prompts[i]!r} | {'yes' if same else 'no'} | {'' if same else common} "
                  f"| {got.strip()[:60]!r} |")
    for i in range(k):
        ref = read(f"{d}/{engine}-f16-{i}.txt")
        if engine == "llama": ref = ref.removeprefix(prompts[i])
        print(f"| {'llama.cpp' if engine == 'llama' else engine} | F16 | {prompts[i]!r} | (reference) | | {ref.strip()[:60]!r} |")
PY
