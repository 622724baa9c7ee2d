#!/usr/bin/python3
"""A random-weight Llama checkpoint of SmolLM2-135M's shape, for memory measurements (bench/peak_rss.sh).

30 layers, 9 query / 3 KV heads, d_model 576, d_ff 1536, vocab 49152, tied embeddings, stored in
bfloat16 (as released checkpoints are). Weights are normal(0, 0.02), norms 1: the values do not
matter for memory, only shapes and dtype do. The tokenizer is SmolLM2's own (49152 entries), copied
from a directory made by scripts/get_smollm2.sh, so every CLI stage that tokenizes works unchanged.

Build-time only (Debian's python3-torch for bf16 rounding); radistill never runs Python.
  /usr/bin/python3 bench/make_random_llama.py --tokenizer-from models/smollm2-135m-instruct --out DIR
"""
import argparse
import json
import os
import shutil
import struct
import sys

import torch

SHAPE = dict(n_layer=30, n_head=9, n_head_kv=3, d_model=576, d_ff=1536, vocab=49152)


def write_safetensors(path, tensors):
    """Writes name -> bf16 tensor as safetensors (names sorted, 8-byte aligned data), atomically."""
    header, offset, blobs = {}, 0, []
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        assert t.dtype == torch.bfloat16, name
        raw = t.view(torch.int16).numpy().tobytes()
        header[name] = {"dtype": "BF16", "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
        blobs.append(raw)
    header["__metadata__"] = {"format": "pt"}
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * ((8 - len(head) % 8) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(head)))
        f.write(head)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tokenizer-from", required=True, help="directory with SmolLM2's tokenizer.json")
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    tok = os.path.join(a.tokenizer_from, "tokenizer.json")
    if not os.path.isfile(tok):
        sys.exit(f"{tok}: missing; run scripts/get_smollm2.sh to fetch SmolLM2's tokenizer")
    vocab = len(json.load(open(tok))["model"]["vocab"])
    if vocab != SHAPE["vocab"]:
        sys.exit(f"{tok}: {vocab} base tokens, expected {SHAPE['vocab']} (SmolLM2's tokenizer)")
    os.makedirs(a.out, exist_ok=True)
    g = torch.Generator().manual_seed(a.seed)
    s = SHAPE
    d_head = s["d_model"] // s["n_head"]

    def mat(rows, cols):
        return (torch.randn(rows, cols, generator=g) * 0.02).to(torch.bfloat16)

    t = {"model.embed_tokens.weight": mat(s["vocab"], s["d_model"]),
         "model.norm.weight": torch.ones(s["d_model"], dtype=torch.bfloat16)}
    for i in range(s["n_layer"]):
        p = f"model.layers.{i}."
        t[p + "self_attn.q_proj.weight"] = mat(s["n_head"] * d_head, s["d_model"])
        t[p + "self_attn.k_proj.weight"] = mat(s["n_head_kv"] * d_head, s["d_model"])
        t[p + "self_attn.v_proj.weight"] = mat(s["n_head_kv"] * d_head, s["d_model"])
        t[p + "self_attn.o_proj.weight"] = mat(s["d_model"], s["n_head"] * d_head)
        t[p + "mlp.gate_proj.weight"] = mat(s["d_ff"], s["d_model"])
        t[p + "mlp.up_proj.weight"] = mat(s["d_ff"], s["d_model"])
        t[p + "mlp.down_proj.weight"] = mat(s["d_model"], s["d_ff"])
        t[p + "input_layernorm.weight"] = torch.ones(s["d_model"], dtype=torch.bfloat16)
        t[p + "post_attention_layernorm.weight"] = torch.ones(s["d_model"], dtype=torch.bfloat16)
    write_safetensors(os.path.join(a.out, "model.safetensors"), t)
    config = {"architectures": ["LlamaForCausalLM"], "attention_bias": False, "bos_token_id": 1, "eos_token_id": 2,
              "hidden_act": "silu", "hidden_size": s["d_model"], "intermediate_size": s["d_ff"],
              "max_position_embeddings": 8192, "mlp_bias": False, "model_type": "llama",
              "num_attention_heads": s["n_head"], "num_hidden_layers": s["n_layer"],
              "num_key_value_heads": s["n_head_kv"], "rms_norm_eps": 1e-5, "rope_scaling": None,
              "rope_theta": 100000.0, "tie_word_embeddings": True, "torch_dtype": "bfloat16",
              "vocab_size": s["vocab"]}
    with open(os.path.join(a.out, "config.json.tmp"), "w") as f:
        json.dump(config, f, indent=2)
    os.replace(os.path.join(a.out, "config.json.tmp"), os.path.join(a.out, "config.json"))
    for name in ("tokenizer.json", "tokenizer_config.json"):
        src = os.path.join(a.tokenizer_from, name)
        if os.path.isfile(src):
            shutil.copyfile(src, os.path.join(a.out, name))
    n = sum(x.numel() for x in t.values())
    print(f"{a.out}: {n} parameters ({n / 1e6:.1f}M), bf16, {2 * n / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
