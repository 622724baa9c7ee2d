#!/usr/bin/env bash
# SmolLM2-135M-Instruct on llama.cpp and on radistill's runtime at the same precision (issue 30), side
# by side in one run: llama.cpp's `llama-bench` on an F16 GGUF against `radistill bench` on
#   - F16: that same GGUF imported with `import-gguf --dtype float16` (bit for bit llama.cpp's weights),
#   - BF16: the Q4_1 GGUF of scripts/get_smollm2.sh imported with `--dtype bfloat16` (the F16 GGUF is
#     exported from it, so both hold the same values);
# and, for each type in QUANT (default q8_0,q4_0), one file `radistill quantize` wrote from the F16
# directory, run by both engines as it is (the runtime keeps its blocks quantised). QUANT may name
# q4_k_m when $WORK/smollm2-q4_k_m.gguf exists: llama.cpp's own `llama-quantize smollm2-f16.gguf
# smollm2-q4_k_m.gguf Q4_K_M` (Q4_K and Q6_K where rows are whole 256-value super-blocks, Q5_0 and Q8_0
# where, as in most of SmolLM2's 576-wide matrices, they are not).
# Prompt processing of 128 tokens; generation of GEN tokens after 128 and after 4096 tokens of context
# (llama-bench -d; radistill bench reports tg after each --prompt length); K/V in f16 on both (llama.cpp's
# default -ctk/-ctv f16, radistill --cache-type f16); 1 and 2 threads. `uptime` is printed before every
# block and the STREAM-like probe (bench/roofline_probe.cpp) runs first, so the GB/s of weights per token
# can be set against this machine's read bandwidth under the same load. BEFORE=/path/to/an/older/radistill
# adds its rows (before/after a kernel change, in the same run). A table with the ratios is printed last.
#
# Usage: LLAMA_BENCH=/path/to/llama-bench [REPS=3] [GEN=64] [CTX=128,4096] [BEFORE=old-radistill] \
#          bench/smollm2_vs_llamacpp.sh [build] [threads,..]
# llama-bench: see bench/llamacpp_vs_runtime.sh (built from the llama.cpp sources vendored in PyPI's
# llama-cpp-python sdist; bench/RESULTS.md used 0.3.36, built under /var/tmp/lcp).
set -euo pipefail
build=${1:-build}
threads=${2:-1,2}
reps=${REPS:-3}
gen=${GEN:-64}
ctx=${CTX:-128,4096}  # contexts generation is timed at (llama-bench -d, radistill bench --prompt)
quant=${QUANT-q8_0,q4_0}  # quantised files both engines run; empty: none
gguf_q41=${SMOLLM2_GGUF:-data/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf}
llama_bench=${LLAMA_BENCH:?set LLAMA_BENCH to a llama-bench binary}
work=${WORK:-/var/tmp/radistill-smollm2-bench}
mkdir -p "$work"
cli="$build/radistill -q"
[ -f "$gguf_q41" ] || { echo "$gguf_q41 is missing: run bash scripts/get_smollm2.sh first" >&2; exit 1; }

[ -f "$work/bf16/config.json" ] || $cli import-gguf "$gguf_q41" "$work/bf16" --dtype bfloat16 >&2
[ -f "$work/smollm2-f16.gguf" ] || $cli export-gguf "$work/bf16" "$work/smollm2-f16.gguf" --dtype f16 >&2
[ -f "$work/f16/config.json" ] || $cli import-gguf "$work/smollm2-f16.gguf" "$work/f16" --dtype float16 >&2
for q in ${quant//,/ }; do
  [ -f "$work/smollm2-$q.gguf" ] || $cli quantize "$work/f16" --type "$q" -o "$work/smollm2-$q.gguf" >&2
done
[ -x "$work/roofline_probe" ] || g++ -O3 -std=c++17 -pthread bench/roofline_probe.cpp -o "$work/roofline_probe"
# A hybrid of SmolLM2 for the rows where its small cache should show (issue 30, part 4): the 6 heads
# (2.2% of 270) that the needle sweep ranked top (bench/RESULTS.md, issue 18: L16H0, L18H6, L19H8,
# L20H1, L29H1, L1H0) kept as attention, every other head recurrent (`convert`, attention-initialised,
# BF16 as the teacher): its speed is measured here, not its quality. HYBRID=0 leaves it out.
if [ "${HYBRID:-1}" = 1 ] && [ ! -f "$work/hybrid6/config.json" ]; then
  echo '{"kept_heads": [[1, 0], [16, 0], [18, 6], [19, 8], [20, 1], [29, 1]]}' > "$work/plan_top6.json"
  $cli convert "$work/bf16" --plan "$work/plan_top6.json" --out "$work/hybrid6" >&2
fi

load() { uptime | sed 's/.*load average: //'; }
out="$work/results.jsonl"
: >"$out"
emit() {  # engine label threads json-array
  python3 -c 'import json,sys; [print(json.dumps(dict(r, engine=sys.argv[1], label=sys.argv[2], load=sys.argv[3]))) for r in json.load(sys.stdin)]' "$@" >>"$out"
}
echo "# $(date -u +%FT%TZ) $(uname -n) $(nproc) cores; load: $(load)"
for t in ${threads//,/ }; do
  echo "# $(date -u +%FT%TZ) load: $(load) roofline_probe threads=$t"
  "$work/roofline_probe" "$t" 1024 | tee -a "$work/probe.jsonl"
  l=$(load)
  echo "# $(date -u +%FT%TZ) load: $l llama.cpp F16 threads=$t"
  "$llama_bench" -m "$work/smollm2-f16.gguf" -t "$t" -p 128 -n 0 -r "$reps" -o json | emit llama.cpp F16 "$l"
  "$llama_bench" -m "$work/smollm2-f16.gguf" -t "$t" -p 0 -n "$gen" -d "$ctx" -r "$reps" -o json | emit llama.cpp F16 "$l"
  variants=("radistill BF16 $build/radistill $work/bf16" "radistill F16 $build/radistill $work/f16")
  for q in ${quant//,/ }; do
    Q=${q^^}
    l=$(load)
    echo "# $(date -u +%FT%TZ) load: $l llama.cpp $Q threads=$t"
    "$llama_bench" -m "$work/smollm2-$q.gguf" -t "$t" -p 128 -n 0 -r "$reps" -o json | emit llama.cpp "$Q" "$l"
    "$llama_bench" -m "$work/smollm2-$q.gguf" -t "$t" -p 0 -n "$gen" -d "$ctx" -r "$reps" -o json | emit llama.cpp "$Q" "$l"
    variants+=("radistill $Q $build/radistill $work/smollm2-$q.gguf")
  done
  [ -z "${BEFORE:-}" ] || variants+=("before BF16 $BEFORE $work/bf16")
  [ "${HYBRID:-1}" != 1 ] || variants+=("radistill hybrid6-BF16 $build/radistill $work/hybrid6")
  for variant in "${variants[@]}"; do
    set -- $variant
    l=$(load)
    echo "# $(date -u +%FT%TZ) load: $l $1 $2 ($3) threads=$t"
    "$3" -q --threads "$t" bench "$4" --prompt "$ctx" --gen "$gen" --reps "$reps" --cache-type f16 --json | emit "$1" "$2" "$l"
  done
done

python3 - "$out" "$work" <<'PY'
import json, os, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
size = {lab: os.path.getsize(os.path.join(sys.argv[2], f"smollm2-{lab.lower()}.gguf"))
        for lab in ("F16", "Q8_0", "Q4_0", "Q4_K_M") if os.path.exists(os.path.join(sys.argv[2], f"smollm2-{lab.lower()}.gguf"))}
table = {}
for r in rows:
    name = f"{r['engine']} {r['label']}"
    if r["engine"] == "llama.cpp":
        t = r["n_threads"]
        test = "pp128" if r["n_gen"] == 0 else f"tg@{r.get('n_depth', 0)}"
        table.setdefault((t, test), {})[name] = (r["avg_ts"], r["load"])
    else:
        t = r["threads"]
        if r["n_prompt"] == 128: table.setdefault((t, "pp128"), {})[name] = (r["pp_tokens_per_s"], r["load"])
        table.setdefault((t, f"tg@{r['n_prompt']}"), {})[name] = (r["tg_tokens_per_s"], r["load"])
# The llama.cpp row each runtime row is set against: the same file's (Q8_0, Q4_0), or F16 for the
# 16-bit directories and the hybrid (its ratio is against llama.cpp's full-attention teacher).
def precision(name):
    for lab in ("Q8_0", "Q4_0", "Q4_K_M"):
        if name.endswith(" " + lab): return lab
    return "F16"
print(f"\n| threads | test | engine, weights | t/s | x llama.cpp, same precision | GB/s of weights (tg) | load |")
print("|---:|---|---|---:|---:|---:|---|")
for (t, test), engines in sorted(table.items()):
    for name, (v, l) in sorted(engines.items(), key=lambda e: (precision(e[0]), not e[0].startswith("llama.cpp"))):
        p = precision(name)
        ref = engines.get(f"llama.cpp {p}", (None,))[0]
        ratio = f"{v / ref:.2f} ({p})" if ref else ""
        # every weight is read once per generated token (the tied LM head included); the hybrid holds
        # other weights: no GB/s
        gbs = f"{v * size[p] / 1e9:.1f}" if test.startswith("tg") and "hybrid" not in name and p in size else ""
        print(f"| {t} | {test} | {name} | {v:.1f} | {ratio} | {gbs} | {l} |")
PY
