#!/usr/bin/env python3
"""Writes a random-weight hybrid model directory (radistill_hybrid config + model.safetensors) of
a chosen size, for runtime benchmarks where the weights cannot fit in the caches (issue 15's
bandwidth-bound case). numpy only; weights N(0, 0.02), norms 1, stored as BF16 (round to nearest
even) or F32. Not a trained model: its tokens are meaningless, its speed is what is measured.

  python3 bench/make_random_hybrid.py OUT_DIR [--d-model 1024 --layers 16 --heads 16 --kv-heads 4
      --d-ff 2816 --vocab 32000 --kept 0.03 --d-state 16 --dtype bf16]
"""
import argparse, json, os, struct
import numpy as np

ap = argparse.ArgumentParser()
ap.add_argument("out")
ap.add_argument("--d-model", type=int, default=1024)
ap.add_argument("--layers", type=int, default=16)
ap.add_argument("--heads", type=int, default=16)
ap.add_argument("--kv-heads", type=int, default=4)
ap.add_argument("--d-ff", type=int, default=2816)
ap.add_argument("--vocab", type=int, default=32000)
ap.add_argument("--kept", type=float, default=0.03, help="fraction of query heads kept as attention")
ap.add_argument("--d-state", type=int, default=16)
ap.add_argument("--dtype", choices=["bf16", "f32"], default="bf16")
ap.add_argument("--seed", type=int, default=0)
a = ap.parse_args()
rng = np.random.default_rng(a.seed)
d, L, H, Hkv, F, V, N = a.d_model, a.layers, a.heads, a.kv_heads, a.d_ff, a.vocab, a.d_state
Dh = d // H
n_kept = max(0, round(a.kept * L * H))
all_heads = [(l, h) for l in range(L) for h in range(H)]
kept = sorted(tuple(x) for x in rng.permutation(all_heads)[:n_kept].tolist()) if n_kept else []

def store(x):
    x = np.ascontiguousarray(x, dtype=np.float32)
    if a.dtype == "f32":
        return "F32", x.tobytes()
    u = x.view(np.uint32).astype(np.uint64)
    u = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)  # round to nearest even
    return "BF16", u.tobytes()

tensors = {}
def add(name, *shape, ones=False, zeros=False):
    tensors[name] = np.ones(shape, np.float32) if ones else np.zeros(shape, np.float32) if zeros else \
        (rng.standard_normal(shape, dtype=np.float32) * 0.02)

add("model.embed_tokens.weight", V, d)
add("model.norm.weight", d, ones=True)
for l in range(L):
    p = f"model.layers.{l}."
    add(p + "input_layernorm.weight", d, ones=True)
    add(p + "post_attention_layernorm.weight", d, ones=True)
    k = [h for (ll, h) in kept if ll == l]
    g = sorted(set(h // (H // Hkv) for h in k))
    s = [h for h in range(H) if h not in k]
    at = p + "self_attn."
    if k:
        add(at + "q_proj.weight", len(k) * Dh, d)
        add(at + "k_proj.weight", len(g) * Dh, d)
        add(at + "v_proj.weight", len(g) * Dh, d)
    add(at + "o_proj.weight", d, H * Dh)
    if s:
        add(at + "ssm.x_proj.weight", len(s) * Dh, d)
        add(at + "ssm.B_proj.weight", len(s) * N, d)
        add(at + "ssm.C_proj.weight", len(s) * N, d)
        add(at + "ssm.a_proj.weight", len(s), d)
        add(at + "ssm.a_proj.bias", len(s), zeros=True)
        add(at + "ssm.D", len(s), ones=True)
    add(p + "mlp.gate_proj.weight", F, d)
    add(p + "mlp.up_proj.weight", F, d)
    add(p + "mlp.down_proj.weight", d, F)

os.makedirs(a.out, exist_ok=True)
header, blobs, off = {"__metadata__": {"format": "pt"}}, [], 0
for name in sorted(tensors):
    dt, b = store(tensors[name])
    header[name] = {"dtype": dt, "shape": list(tensors[name].shape), "data_offsets": [off, off + len(b)]}
    blobs.append(b)
    off += len(b)
hj = json.dumps(header).encode()
hj += b" " * ((8 - len(hj) % 8) % 8)
tmp = os.path.join(a.out, "model.safetensors.tmp")
with open(tmp, "wb") as f:
    f.write(struct.pack("<Q", len(hj)))
    f.write(hj)
    for b in blobs:
        f.write(b)
os.replace(tmp, os.path.join(a.out, "model.safetensors"))
config = {
    "architectures": ["RadistillHybridForCausalLM"], "model_type": "radistill_hybrid",
    "teacher_architecture": "LlamaForCausalLM", "teacher_model_type": "llama",
    "hidden_size": d, "intermediate_size": F, "num_hidden_layers": L, "num_attention_heads": H,
    "num_key_value_heads": Hkv, "head_dim": Dh, "max_position_embeddings": 32768, "rms_norm_eps": 1e-5,
    "rope_theta": 10000.0, "tie_word_embeddings": True, "vocab_size": V, "hidden_act": "silu",
    "torch_dtype": "bfloat16" if a.dtype == "bf16" else "float32", "bos_token_id": 1, "eos_token_id": 2,
    "head_plan": {"kept_heads": [list(x) for x in kept]},
    "ssm": {"d_state": N, "conv": False, "conv_width": 4, "gate": False, "bias": False, "chunk_size": 64, "init": "random"},
}
with open(os.path.join(a.out, "config.json.tmp"), "w") as f:
    json.dump(config, f, indent=2)
os.replace(os.path.join(a.out, "config.json.tmp"), os.path.join(a.out, "config.json"))
n_params = sum(t.size for t in tensors.values())
print(json.dumps({"out": a.out, "params": int(n_params), "kept_heads": len(kept), "dtype": a.dtype, "bytes": off}))
