#!/usr/bin/env python3
"""Helpers of scripts/gpu_check.sh (issue 28); numpy only, so they run on the GPU machine's python3
and on Debian's /usr/bin/python3 alike. Each comparison prints one JSON object and exits 1 when a
bound is exceeded.

  gpu_check.py random-llama OUT --tokenizer DIR [--dtype bf16|f32] [--layers N]   SmolLM2-135M shape
  gpu_check.py logits REF.npy GOT.npy --max-abs X             forward logits of two devices
  gpu_check.py step REF_DIR GOT_DIR --max-loss-rel X          one distill step: losses, grad norm, weights
  gpu_check.py heads REF.json GOT.json --top K                the head sweep's ranking
  gpu_check.py throughput METRICS.jsonl --seconds S [--skip N]
"""
import argparse
import json
import os
import shutil
import struct
import sys

import numpy as np

# SmolLM2-135M(-Instruct)'s config.json: 30 layers of 9 query / 3 KV heads, d_model 576.
SMOLLM2_135M = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 576,
    "intermediate_size": 1536, "num_hidden_layers": 30, "num_attention_heads": 9,
    "num_key_value_heads": 3, "vocab_size": 49152, "max_position_embeddings": 8192,
    "rope_theta": 100000.0, "rms_norm_eps": 1e-05, "tie_word_embeddings": True, "hidden_act": "silu",
    "bos_token_id": 1, "eos_token_id": 2, "attention_bias": False, "mlp_bias": False,
}


def st_dtype(name):
    return {"F32": np.float32, "BF16": np.uint16, "F16": np.float16, "I64": np.int64}[name]


def read_safetensors(path):
    """{name: float32 array} of a .safetensors file (BF16 widened exactly)."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        arr = np.frombuffer(data[a:b], dtype=st_dtype(info["dtype"])).reshape(info["shape"])
        if info["dtype"] == "BF16":
            arr = (arr.astype(np.uint32) << 16).view(np.float32)
        out[name] = arr.astype(np.float32)
    return out


def model_tensors(directory):
    files = sorted(f for f in os.listdir(directory) if f.endswith(".safetensors"))
    tensors = {}
    for f in files:
        tensors.update(read_safetensors(os.path.join(directory, f)))
    return tensors


def write_safetensors(path, tensors, dtype):
    header, blobs, offset = {}, [], 0
    for name, arr in tensors.items():
        if dtype == "bf16":
            raw = (np.ascontiguousarray(arr, dtype=np.float32).view(np.uint32) >> 16).astype(np.uint16).tobytes()
            st = "BF16"
        else:
            raw = np.ascontiguousarray(arr, dtype=np.float32).tobytes()
            st = "F32"
        header[name] = {"dtype": st, "shape": list(arr.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)


def random_llama(args):
    cfg = dict(SMOLLM2_135M)
    if args.layers:
        cfg["num_hidden_layers"] = args.layers
    cfg["torch_dtype"] = "bfloat16" if args.dtype == "bf16" else "float32"
    rng = np.random.default_rng(args.seed)
    d, ff, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    hd = d // cfg["num_attention_heads"]
    kv = cfg["num_key_value_heads"] * hd
    std = 0.02

    def normal(*shape):
        return rng.standard_normal(shape, dtype=np.float32) * std

    t = {"model.embed_tokens.weight": normal(v, d), "model.norm.weight": np.ones(d, np.float32)}
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        t[p + "input_layernorm.weight"] = np.ones(d, np.float32)
        t[p + "post_attention_layernorm.weight"] = np.ones(d, np.float32)
        t[p + "self_attn.q_proj.weight"] = normal(d, d)
        t[p + "self_attn.k_proj.weight"] = normal(kv, d)
        t[p + "self_attn.v_proj.weight"] = normal(kv, d)
        t[p + "self_attn.o_proj.weight"] = normal(d, d)
        t[p + "mlp.gate_proj.weight"] = normal(ff, d)
        t[p + "mlp.up_proj.weight"] = normal(ff, d)
        t[p + "mlp.down_proj.weight"] = normal(d, ff)
    os.makedirs(args.out, exist_ok=True)
    write_safetensors(os.path.join(args.out, "model.safetensors"), t, args.dtype)
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        src = os.path.join(args.tokenizer, name)
        if os.path.exists(src):
            shutil.copy(src, os.path.join(args.out, name))
    n = sum(a.size for a in t.values())
    print(json.dumps({"random_llama": args.out, "parameters": int(n), "layers": cfg["num_hidden_layers"],
                      "dtype": args.dtype}))


def finish(result, ok):
    result["ok"] = bool(ok)
    print(json.dumps(result))
    sys.exit(0 if ok else 1)


def logits(args):
    ref, got = np.load(args.ref).astype(np.float64), np.load(args.got).astype(np.float64)
    if ref.shape != got.shape:
        finish({"check": "logits", "error": f"shapes {ref.shape} vs {got.shape}"}, False)
    diff = np.abs(ref - got)
    agree = float(np.mean(ref.argmax(-1) == got.argmax(-1)))
    r = {"check": "logits", "label": args.label, "shape": list(ref.shape), "max_abs": float(diff.max()),
         "mean_abs": float(diff.mean()), "ref_scale": float(np.abs(ref).max()), "argmax_agreement": agree}
    finish(r, r["max_abs"] <= args.max_abs and agree >= args.min_argmax)


def first_metrics(directory):
    with open(os.path.join(directory, "metrics.jsonl")) as f:
        for line in f:
            rec = json.loads(line)
            if "loss" in rec:
                return rec
    raise SystemExit(f"{directory}/metrics.jsonl: no loss line")


def step(args):
    a, b = first_metrics(args.ref), first_metrics(args.got)
    r = {"check": "distill_step", "label": args.label}
    ok = True
    for key in ("loss", "kl", "grad_norm"):
        if key in a and key in b:
            rel = abs(a[key] - b[key]) / max(abs(a[key]), 1e-12)
            r[key] = [a[key], b[key]]
            r[key + "_rel"] = rel
            ok = ok and rel <= (args.max_grad_rel if key == "grad_norm" else args.max_loss_rel)
    # After one AdamW step every weight moved by about lr * sign(gradient): where the two runs moved a
    # weight the opposite way, the two gradients disagree in sign.
    wa, wb = model_tensors(args.ref_model), model_tensors(args.got_model)
    w0 = model_tensors(args.init_model) if args.init_model else None
    worst, flipped, total = 0.0, 0, 0
    for name, x in wa.items():
        if name not in wb:
            continue
        worst = max(worst, float(np.abs(x - wb[name]).max()))
        if w0 is not None and name in w0:
            da, db = x - w0[name], wb[name] - w0[name]
            moved = (np.abs(da) > 0) & (np.abs(db) > 0)
            flipped += int(np.sum(np.sign(da[moved]) != np.sign(db[moved])))
            total += int(np.sum(moved))
    r["weights_max_abs_diff"] = worst
    if total:
        r["update_sign_disagreement"] = flipped / total
        ok = ok and flipped / total <= args.max_flip
    finish(r, ok)


def heads(args):
    a, b = json.load(open(args.ref)), json.load(open(args.got))
    rank = lambda j: [(h["layer"], h["head"]) for h in sorted(j["heads"], key=lambda h: h["rank"])]
    ra, rb = rank(a), rank(b)
    k = min(args.top, len(ra))
    sa = {h: i for i, h in enumerate(ra)}
    sb = {h: i for i, h in enumerate(rb)}
    common = [h for h in sa if h in sb]
    n = len(common)
    d2 = sum((sa[h] - sb[h]) ** 2 for h in common)
    spearman = 1 - 6 * d2 / (n * (n * n - 1)) if n > 1 else 1.0
    r = {"check": "head_ranking", "top": k, "top_ref": [list(h) for h in ra[:k]], "top_got": [list(h) for h in rb[:k]],
         "top_same_set": set(ra[:k]) == set(rb[:k]), "spearman": spearman,
         "teacher_accuracy": [a.get("teacher_accuracy"), b.get("teacher_accuracy")]}
    finish(r, r["top_same_set"] and spearman >= args.min_spearman)


def throughput(args):
    recs = []
    with open(args.metrics) as f:
        for line in f:
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by the time limit
            if "tokens_per_s" in rec:
                recs.append(rec)
    steady = recs[args.skip:] or recs
    if not steady:
        finish({"check": "throughput", "error": "no metrics line"}, False)
    tps = float(np.median([r["tokens_per_s"] for r in steady]))
    r = {"check": "throughput", "measured_seconds": args.seconds, "metric_lines": len(recs), "steps": recs[-1]["step"],
         "tokens_per_s": tps, "hours_per_billion_tokens": 1e9 / tps / 3600 if tps > 0 else None,
         "last_loss": recs[-1].get("loss")}
    finish(r, True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("random-llama")
    p.add_argument("out")
    p.add_argument("--tokenizer", required=True)
    p.add_argument("--dtype", choices=["bf16", "f32"], default="f32")
    p.add_argument("--layers", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(fn=random_llama)
    p = sub.add_parser("logits")
    p.add_argument("ref"); p.add_argument("got"); p.add_argument("--label", default="")
    p.add_argument("--max-abs", type=float, required=True)
    p.add_argument("--min-argmax", type=float, default=0.99)
    p.set_defaults(fn=logits)
    p = sub.add_parser("step")
    p.add_argument("ref"); p.add_argument("got"); p.add_argument("--label", default="")
    p.add_argument("--ref-model", required=True); p.add_argument("--got-model", required=True)
    p.add_argument("--init-model", default="")
    p.add_argument("--max-loss-rel", type=float, required=True)
    p.add_argument("--max-grad-rel", type=float, required=True)
    p.add_argument("--max-flip", type=float, default=0.05)
    p.set_defaults(fn=step)
    p = sub.add_parser("heads")
    p.add_argument("ref"); p.add_argument("got")
    p.add_argument("--top", type=int, default=4)
    p.add_argument("--min-spearman", type=float, default=0.9)
    p.set_defaults(fn=heads)
    p = sub.add_parser("throughput")
    p.add_argument("metrics"); p.add_argument("--seconds", type=float, required=True)
    p.add_argument("--skip", type=int, default=1)
    p.set_defaults(fn=throughput)
    args = ap.parse_args()
    args.fn(args)


if __name__ == "__main__":
    main()
