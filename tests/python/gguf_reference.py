#!/usr/bin/env python3
"""Independent reference logits for a `llama` GGUF file (checks `radistill import-gguf`).

Two steps, because the interpreter with PyPI's `gguf` package has no torch and Debian's
/usr/bin/python3 (python3-torch) has no `gguf`:

  python3 tests/python/gguf_reference.py dump MODEL.gguf WEIGHTS.npz
      # pip's `gguf` package reads and dequantises every tensor (its own numpy code, not ours) and
      # stores them under their GGUF names, in GGUF row order, with the hyperparameters.
  /usr/bin/python3 tests/python/gguf_reference.py logits WEIGHTS.npz --ids 1,2,3 --out REF.npy
      # float64 forward written from llama.cpp's `llama` graph: the Q/K rows stay in the GGUF
      # order and RoPE rotates ADJACENT pairs (2i, 2i+1) as ggml's rope (mode 0) does, so no row
      # permutation is undone here; radistill's import undoes it and rotates halves instead. Equal
      # logits therefore also check that permutation.
  python3 tests/python/gguf_reference.py compare REF.npy RAD.npy
      # prints the max |difference| of the logits and of their argmax per position.

A test / measurement script only, never a runtime dependency of radistill.
"""

import argparse
import json
import sys

import numpy as np


def dump(gguf_path, out_path):
    import gguf  # PyPI package, this script's only use of it

    r = gguf.GGUFReader(gguf_path)

    def field(key, default=None):
        f = r.fields.get(key)
        if f is None:
            return default
        v = f.parts[f.data[0]]
        if f.types[0] == gguf.GGUFValueType.STRING:
            return bytes(v).decode()
        return v.tolist()[0]

    arch = field("general.architecture")
    assert arch == "llama", arch
    hp = {
        "n_layer": field("llama.block_count"),
        "n_head": field("llama.attention.head_count"),
        "n_head_kv": field("llama.attention.head_count_kv"),
        "d_model": field("llama.embedding_length"),
        "eps": field("llama.attention.layer_norm_rms_epsilon"),
        "theta": field("llama.rope.freq_base", 10000.0),
    }
    arrays = {}
    for t in r.tensors:
        w = gguf.quants.dequantize(t.data, t.tensor_type).astype(np.float32)
        # The package returns row-major arrays (outermost first): the GGUF dims reversed.
        assert list(w.shape) == [int(d) for d in reversed(t.shape.tolist())], (t.name, w.shape, t.shape)
        arrays[t.name] = w
        print(t.name, t.tensor_type.name, arrays[t.name].shape, file=sys.stderr)
    arrays["__hparams__"] = np.frombuffer(json.dumps(hp).encode(), dtype=np.uint8)
    np.savez(out_path, **arrays)


def logits(npz_path, ids, out_path):
    import torch

    z = np.load(npz_path)
    hp = json.loads(bytes(z["__hparams__"]).decode())
    W = {k: torch.from_numpy(z[k]).double() for k in z.files if k != "__hparams__"}
    L, H, Hkv, C = hp["n_layer"], hp["n_head"], hp["n_head_kv"], hp["d_model"]
    D = C // H
    eps, theta = hp["eps"], hp["theta"]
    T = len(ids)

    def rms(x, w):
        return w * x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps)

    # ggml rope mode 0 (llama): rotate pairs (x[2i], x[2i+1]) by angle pos * theta^(-2i/D).
    pos = torch.arange(T, dtype=torch.float64)[:, None]
    ang = pos * theta ** (-torch.arange(0, D, 2, dtype=torch.float64) / D)  # [T, D/2]
    cos, sin = torch.cos(ang), torch.sin(ang)

    def rope(x):  # x [n, T, D] in GGUF row order
        a, b = x[..., 0::2], x[..., 1::2]
        out = torch.empty_like(x)
        out[..., 0::2] = a * cos - b * sin
        out[..., 1::2] = a * sin + b * cos
        return out

    mask = torch.full((T, T), float("-inf"), dtype=torch.float64).triu(1)
    h = W["token_embd.weight"][torch.tensor(ids)]
    for l in range(L):
        g = lambda n: W["blk.%d.%s" % (l, n)]  # noqa: E731
        x = rms(h, g("attn_norm.weight"))
        q = (x @ g("attn_q.weight").t()).view(T, H, D).transpose(0, 1)
        k = (x @ g("attn_k.weight").t()).view(T, Hkv, D).transpose(0, 1)
        v = (x @ g("attn_v.weight").t()).view(T, Hkv, D).transpose(0, 1)
        q, k = rope(q), rope(k)
        k = k.repeat_interleave(H // Hkv, dim=0)
        v = v.repeat_interleave(H // Hkv, dim=0)
        p = torch.softmax(q @ k.transpose(1, 2) / D ** 0.5 + mask, dim=-1)
        h = h + (p @ v).transpose(0, 1).reshape(T, H * D) @ g("attn_output.weight").t()
        x = rms(h, g("ffn_norm.weight"))
        gate = x @ g("ffn_gate.weight").t()
        h = h + ((gate * torch.sigmoid(gate)) * (x @ g("ffn_up.weight").t())) @ g("ffn_down.weight").t()
    h = rms(h, W["output_norm.weight"])
    head = W.get("output.weight", W["token_embd.weight"])
    np.save(out_path, (h @ head.t()).float().numpy())


def compare(ref_path, rad_path):
    ref, rad = np.load(ref_path).astype(np.float64), np.load(rad_path).astype(np.float64)
    assert ref.shape == rad.shape, (ref.shape, rad.shape)
    diff = np.abs(ref - rad)
    same_argmax = (ref.argmax(-1) == rad.argmax(-1)).mean()
    print(json.dumps({
        "positions": ref.shape[0],
        "vocab": ref.shape[1],
        "max_abs_diff": float(diff.max()),
        "mean_abs_diff": float(diff.mean()),
        "logit_range": [float(ref.min()), float(ref.max())],
        "argmax_agreement": float(same_argmax),
    }, indent=2))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("dump")
    d.add_argument("gguf")
    d.add_argument("out")
    lg = sub.add_parser("logits")
    lg.add_argument("npz")
    lg.add_argument("--ids", required=True)
    lg.add_argument("--out", required=True)
    c = sub.add_parser("compare")
    c.add_argument("ref")
    c.add_argument("rad")
    a = ap.parse_args()
    if a.cmd == "dump":
        dump(a.gguf, a.out)
    elif a.cmd == "logits":
        logits(a.npz, [int(x) for x in a.ids.split(",")], a.out)
    else:
        compare(a.ref, a.rad)


if __name__ == "__main__":
    main()
