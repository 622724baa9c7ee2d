#!/usr/bin/python3
"""Independent reference for Llama-family causal LMs, and the golden test fixtures made with it.

Runs on Debian's /usr/bin/python3 with python3-torch (1.13) and numpy only: no transformers, no
safetensors package. It is a test-data generator, never a runtime dependency of radistill.

What it implements, written from the semantics of Hugging Face transformers' modeling_llama.py,
modeling_mistral.py and modeling_qwen2.py (eager attention, no KV cache):

  h = embed_tokens[input_ids]
  per layer:  h = h + o_proj(attn(input_layernorm(h)))
              h = h + down_proj(silu(gate_proj(x)) * up_proj(x)),  x = post_attention_layernorm(h)
  logits = lm_head(norm(h))            (lm_head = embed_tokens when tie_word_embeddings)

  RMSNorm(x) = weight * x / sqrt(mean(x^2, -1) + eps)
  RoPE, "rotate_half" (non-interleaved) layout: q' = q*cos + rotate_half(q)*sin, with
       cos/sin = cat(freqs, freqs), freqs[t, i] = t * inv_freq[i], inv_freq[i] = theta^(-2i/d)
       rope_scaling: linear (inv_freq / factor) and llama3 (_compute_llama3_parameters)
  attention: softmax(q k^T / sqrt(head_dim) + causal mask [+ sliding window]) v, GQA by repeat_kv

The reference computes in float64 from the stored weights (bf16/f16 weights are upcast exactly), so
its logits are "the truth" for that checkpoint; goldens store them as float32.

Usage:
  /usr/bin/python3 tests/python/make_golden.py            # (re)write tests/fixtures/models/*
  /usr/bin/python3 tests/python/make_golden.py --check    # also run the sanity checks
  /usr/bin/python3 tests/python/make_golden.py --reference DIR --ids 1,2,3 [--out FILE]
        # golden logits for any HF-style model dir (config.json + *.safetensors)
"""

import argparse
import json
import math
import os
import struct
import sys
import tempfile

import numpy as np
import torch

# ----------------------------------------------------------------------------------------------
# safetensors, by hand
# ----------------------------------------------------------------------------------------------

# dtype name in the safetensors header -> (torch dtype, numpy dtype used for the raw bytes)
_ST_DTYPES = {
    "F64": (torch.float64, "<f8"),
    "F32": (torch.float32, "<f4"),
    "F16": (torch.float16, "<f2"),
    "BF16": (torch.bfloat16, "<i2"),  # raw 16-bit patterns; numpy has no bfloat16
    "I64": (torch.int64, "<i8"),
    "I32": (torch.int32, "<i4"),
}
_TORCH_TO_ST = {v[0]: k for k, v in _ST_DTYPES.items()}


def _tensor_bytes(t):
    """Raw little-endian bytes of a tensor (C order)."""
    t = t.detach().contiguous().cpu()
    st = _TORCH_TO_ST[t.dtype]
    if st == "BF16":
        arr = t.view(torch.int16).numpy()
    else:
        arr = t.numpy()
    return np.ascontiguousarray(arr).astype(_ST_DTYPES[st][1], copy=False).tobytes()


def write_safetensors(path, tensors):
    """tensors: dict name -> torch.Tensor. Tensors are laid out in sorted-name order."""
    header = {"__metadata__": {"format": "pt"}}
    blobs = []
    offset = 0
    for name in sorted(tensors):
        t = tensors[name]
        data = _tensor_bytes(t)
        header[name] = {
            "dtype": _TORCH_TO_ST[t.dtype],
            "shape": list(t.shape),
            "data_offsets": [offset, offset + len(data)],
        }
        blobs.append(data)
        offset += len(data)
    hjson = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hjson += b" " * ((-len(hjson)) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hjson)))
        f.write(hjson)
        for b in blobs:
            f.write(b)
    return offset  # bytes of tensor data


def read_safetensors(path):
    """Returns dict name -> torch.Tensor (in the stored dtype)."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n].decode("utf-8"))
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        tdt, npdt = _ST_DTYPES[info["dtype"]]
        b, e = info["data_offsets"]
        arr = np.frombuffer(raw[base + b : base + e], dtype=npdt).copy()
        t = torch.from_numpy(arr)
        if info["dtype"] == "BF16":
            t = t.view(torch.bfloat16)
        out[name] = t.reshape(info["shape"])
    return out


def load_model_dir(model_dir):
    """config dict + all weights of an HF-style model dir (single file or sharded with an index)."""
    with open(os.path.join(model_dir, "config.json")) as f:
        cfg = json.load(f)
    index = os.path.join(model_dir, "model.safetensors.index.json")
    weights = {}
    if os.path.exists(index):
        with open(index) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    for fn in files:
        weights.update(read_safetensors(os.path.join(model_dir, fn)))
    return cfg, weights


# ----------------------------------------------------------------------------------------------
# the reference model (float64)
# ----------------------------------------------------------------------------------------------


def head_dim_of(cfg):
    hd = cfg.get("head_dim")
    return hd if hd else cfg["hidden_size"] // cfg["num_attention_heads"]


def rope_inv_freq(cfg):
    """inv_freq [head_dim/2] in float64, with rope_scaling applied (HF rope_init_fn semantics)."""
    d = head_dim_of(cfg)
    theta = float(cfg.get("rope_theta", 10000.0))
    inv_freq = 1.0 / (theta ** (torch.arange(0, d, 2, dtype=torch.float64) / d))
    rs = cfg.get("rope_scaling")
    if not rs:
        return inv_freq
    kind = rs.get("rope_type", rs.get("type", "default"))
    if kind == "default":
        return inv_freq
    if kind == "linear":
        return inv_freq / float(rs["factor"])
    if kind == "llama3":
        factor = float(rs["factor"])
        low = float(rs["low_freq_factor"])
        high = float(rs["high_freq_factor"])
        old_ctx = float(rs["original_max_position_embeddings"])
        low_freq_wavelen = old_ctx / low
        high_freq_wavelen = old_ctx / high
        out = torch.empty_like(inv_freq)
        for i, f in enumerate(inv_freq.tolist()):
            wavelen = 2.0 * math.pi / f
            if wavelen < high_freq_wavelen:  # high frequency: unchanged
                out[i] = f
            elif wavelen > low_freq_wavelen:  # low frequency: interpolated by factor
                out[i] = f / factor
            else:  # in between: smooth mix of the two
                smooth = (old_ctx / wavelen - low) / (high - low)
                out[i] = (1.0 - smooth) * f / factor + smooth * f
        return out
    raise ValueError("unsupported rope_scaling: %r" % (rs,))


def rope_cos_sin(cfg, positions):
    """cos, sin: [T, head_dim] (float64), HF layout cat(freqs, freqs)."""
    inv_freq = rope_inv_freq(cfg)
    freqs = positions.to(torch.float64)[:, None] * inv_freq[None, :]  # [T, d/2]
    emb = torch.cat([freqs, freqs], dim=-1)  # [T, d]
    return emb.cos(), emb.sin()


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat([-x[..., h:], x[..., :h]], dim=-1)


def rms_norm(x, w, eps):
    """HF LlamaRMSNorm: statistics in (at least) float32, result cast back, then * weight."""
    xf = x.to(torch.promote_types(x.dtype, torch.float32))
    var = (xf * xf).mean(dim=-1, keepdim=True)
    return w * (xf * torch.rsqrt(var + eps)).to(x.dtype)


def linear(x, w, b=None):
    y = x @ w.t()
    return y + b if b is not None else y


def attention_mask(T, sliding_window):
    """Additive mask [T, T]: 0 where query i may attend key j, -inf elsewhere.
    Causal: j <= i. Sliding window W (Mistral): also i - W < j."""
    i = torch.arange(T)[:, None]
    j = torch.arange(T)[None, :]
    allowed = j <= i
    if sliding_window:
        allowed = allowed & (j > i - int(sliding_window))
    mask = torch.zeros(T, T, dtype=torch.float64)
    mask[~allowed] = float("-inf")
    return mask


def model_kind(cfg):
    mt = cfg.get("model_type", "llama")
    if mt not in ("llama", "mistral", "qwen2"):
        raise ValueError("unsupported model_type %r" % mt)
    return mt


def sliding_window_of(cfg):
    kind = model_kind(cfg)
    if kind == "mistral":
        return cfg.get("sliding_window")
    if kind == "qwen2":
        # Qwen2 only applies its window when use_sliding_window is true (not exercised here).
        if cfg.get("use_sliding_window", False):
            raise ValueError("qwen2 use_sliding_window=true is not implemented by this reference")
        return None
    return None


def forward(cfg, W, input_ids, dtype=torch.float64):
    """Full-sequence forward. W: dict name -> tensor (any float dtype). Returns logits [T, V].
    dtype is the compute dtype: float64 (default) is the truth used for goldens; float32/bfloat16
    follow HF's casts (norm statistics and softmax in float32) and serve only to size tolerances."""
    P = {k: v.to(dtype) for k, v in W.items()}
    kind = model_kind(cfg)
    T = input_ids.shape[0]
    H = cfg["num_attention_heads"]
    Hkv = cfg.get("num_key_value_heads") or H
    D = head_dim_of(cfg)
    eps = float(cfg.get("rms_norm_eps", 1e-6))
    n_rep = H // Hkv
    # Bias flags: Qwen2 has q/k/v biases only; Llama attention_bias adds q/k/v/o; Llama mlp_bias.
    qkv_bias = kind == "qwen2" or bool(cfg.get("attention_bias", False))
    o_bias = kind == "llama" and bool(cfg.get("attention_bias", False))
    mlp_bias = kind == "llama" and bool(cfg.get("mlp_bias", False))

    cos, sin = rope_cos_sin(cfg, torch.arange(T))  # [T, D]
    cos, sin = cos.to(dtype), sin.to(dtype)
    mask = attention_mask(T, sliding_window_of(cfg))
    sdt = torch.promote_types(dtype, torch.float32)  # softmax dtype

    h = P["model.embed_tokens.weight"][input_ids]  # [T, C]
    for l in range(cfg["num_hidden_layers"]):
        pre = "model.layers.%d." % l
        g = lambda n: P[pre + n]  # noqa: E731
        gb = lambda n, on: P[pre + n] if on else None  # noqa: E731

        x = rms_norm(h, g("input_layernorm.weight"), eps)
        q = linear(x, g("self_attn.q_proj.weight"), gb("self_attn.q_proj.bias", qkv_bias))
        k = linear(x, g("self_attn.k_proj.weight"), gb("self_attn.k_proj.bias", qkv_bias))
        v = linear(x, g("self_attn.v_proj.weight"), gb("self_attn.v_proj.bias", qkv_bias))
        q = q.view(T, H, D).transpose(0, 1)  # [H, T, D]
        k = k.view(T, Hkv, D).transpose(0, 1)  # [Hkv, T, D]
        v = v.view(T, Hkv, D).transpose(0, 1)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        # repeat_kv: query head i reads kv head i // n_rep
        k = k.repeat_interleave(n_rep, dim=0)  # [H, T, D]
        v = v.repeat_interleave(n_rep, dim=0)
        scores = q @ k.transpose(1, 2) / math.sqrt(D) + mask.to(dtype)  # [H, T, T]
        probs = torch.softmax(scores.to(sdt), dim=-1).to(dtype)
        a = (probs @ v).transpose(0, 1).reshape(T, H * D)  # [T, H*D]
        h = h + linear(a, g("self_attn.o_proj.weight"), gb("self_attn.o_proj.bias", o_bias))

        x = rms_norm(h, g("post_attention_layernorm.weight"), eps)
        gate = linear(x, g("mlp.gate_proj.weight"), gb("mlp.gate_proj.bias", mlp_bias))
        up = linear(x, g("mlp.up_proj.weight"), gb("mlp.up_proj.bias", mlp_bias))
        act = gate * torch.sigmoid(gate)  # silu
        h = h + linear(act * up, g("mlp.down_proj.weight"), gb("mlp.down_proj.bias", mlp_bias))

    h = rms_norm(h, P["model.norm.weight"], eps)
    head = P.get("lm_head.weight")
    if head is None or cfg.get("tie_word_embeddings", False):
        head = P["model.embed_tokens.weight"]
    return h @ head.t()


def forward_incremental(cfg, W, input_ids):
    """Same model, one token at a time with a KV cache and explicit per-key loops for the window.
    A second, structurally different implementation used only by --check."""
    P = {k: v.to(torch.float64) for k, v in W.items()}
    kind = model_kind(cfg)
    T = input_ids.shape[0]
    H = cfg["num_attention_heads"]
    Hkv = cfg.get("num_key_value_heads") or H
    D = head_dim_of(cfg)
    eps = float(cfg.get("rms_norm_eps", 1e-6))
    n_rep = H // Hkv
    qkv_bias = kind == "qwen2" or bool(cfg.get("attention_bias", False))
    o_bias = kind == "llama" and bool(cfg.get("attention_bias", False))
    mlp_bias = kind == "llama" and bool(cfg.get("mlp_bias", False))
    win = sliding_window_of(cfg)
    inv_freq = rope_inv_freq(cfg)
    L = cfg["num_hidden_layers"]
    head = P.get("lm_head.weight")
    if head is None or cfg.get("tie_word_embeddings", False):
        head = P["model.embed_tokens.weight"]

    def rope_one(x, pos):  # x [n, D], explicit pairs (i, i + D/2)
        ang = pos * inv_freq
        c, s = ang.cos(), ang.sin()
        x1, x2 = x[:, : D // 2], x[:, D // 2 :]
        return torch.cat([x1 * c - x2 * s, x2 * c + x1 * s], dim=-1)

    kc = [[] for _ in range(L)]
    vc = [[] for _ in range(L)]
    out = []
    for t in range(T):
        h = P["model.embed_tokens.weight"][input_ids[t]]
        for l in range(L):
            pre = "model.layers.%d." % l

            def b(n, on):
                return P[pre + n] if on else 0.0

            x = h / torch.sqrt((h * h).mean() + eps) * P[pre + "input_layernorm.weight"]
            q = P[pre + "self_attn.q_proj.weight"] @ x + b("self_attn.q_proj.bias", qkv_bias)
            k = P[pre + "self_attn.k_proj.weight"] @ x + b("self_attn.k_proj.bias", qkv_bias)
            v = P[pre + "self_attn.v_proj.weight"] @ x + b("self_attn.v_proj.bias", qkv_bias)
            q = rope_one(q.view(H, D), float(t))
            kc[l].append(rope_one(k.view(Hkv, D), float(t)))
            vc[l].append(v.view(Hkv, D))
            heads = []
            for hh in range(H):
                kv = hh // n_rep
                js = [j for j in range(t + 1) if not win or t - j < win]
                s = torch.stack([q[hh] @ kc[l][j][kv] for j in js]) / math.sqrt(D)
                p = torch.exp(s - s.max())
                p = p / p.sum()
                heads.append(sum(p[n] * vc[l][j][kv] for n, j in enumerate(js)))
            a = torch.cat(heads)
            h = h + P[pre + "self_attn.o_proj.weight"] @ a + b("self_attn.o_proj.bias", o_bias)
            x = h / torch.sqrt((h * h).mean() + eps) * P[pre + "post_attention_layernorm.weight"]
            gt = P[pre + "mlp.gate_proj.weight"] @ x + b("mlp.gate_proj.bias", mlp_bias)
            up = P[pre + "mlp.up_proj.weight"] @ x + b("mlp.up_proj.bias", mlp_bias)
            m = torch.nn.functional.silu(gt) * up
            h = h + P[pre + "mlp.down_proj.weight"] @ m + b("mlp.down_proj.bias", mlp_bias)
        h = h / torch.sqrt((h * h).mean() + eps) * P["model.norm.weight"]
        out.append(head @ h)
    return torch.stack(out)


# ----------------------------------------------------------------------------------------------
# random checkpoints
# ----------------------------------------------------------------------------------------------


def param_shapes(cfg):
    """Ordered list of (name, shape, kind) with kind in {linear, embed, norm, bias}."""
    kind = model_kind(cfg)
    C = cfg["hidden_size"]
    F = cfg["intermediate_size"]
    V = cfg["vocab_size"]
    H = cfg["num_attention_heads"]
    Hkv = cfg.get("num_key_value_heads") or H
    D = head_dim_of(cfg)
    qkv_bias = kind == "qwen2" or bool(cfg.get("attention_bias", False))
    o_bias = kind == "llama" and bool(cfg.get("attention_bias", False))
    mlp_bias = kind == "llama" and bool(cfg.get("mlp_bias", False))
    out = [("model.embed_tokens.weight", [V, C], "embed")]
    for l in range(cfg["num_hidden_layers"]):
        p = "model.layers.%d." % l
        out.append((p + "input_layernorm.weight", [C], "norm"))
        for n, o in (("q_proj", H * D), ("k_proj", Hkv * D), ("v_proj", Hkv * D)):
            out.append((p + "self_attn.%s.weight" % n, [o, C], "linear"))
            if qkv_bias:
                out.append((p + "self_attn.%s.bias" % n, [o], "bias"))
        out.append((p + "self_attn.o_proj.weight", [C, H * D], "linear"))
        if o_bias:
            out.append((p + "self_attn.o_proj.bias", [C], "bias"))
        out.append((p + "post_attention_layernorm.weight", [C], "norm"))
        for n, shape in (("gate_proj", [F, C]), ("up_proj", [F, C]), ("down_proj", [C, F])):
            out.append((p + "mlp.%s.weight" % n, shape, "linear"))
            if mlp_bias:
                out.append((p + "mlp.%s.bias" % n, [shape[0]], "bias"))
    out.append(("model.norm.weight", [C], "norm"))
    if not cfg.get("tie_word_embeddings", False):
        out.append(("lm_head.weight", [V, C], "linear"))
    return out


def random_weights(cfg, seed, dtype):
    g = torch.Generator().manual_seed(seed)
    W = {}
    for name, shape, kind in param_shapes(cfg):
        r = torch.randn(shape, generator=g, dtype=torch.float32)
        if kind in ("linear", "embed"):
            t = 0.2 * r
        elif kind == "norm":
            t = 1.0 + 0.1 * r
        else:
            t = 0.1 * r
        W[name] = t.to(dtype)
    return W


# ----------------------------------------------------------------------------------------------
# fixtures
# ----------------------------------------------------------------------------------------------

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.normpath(os.path.join(HERE, "..", "fixtures", "models"))

_DTYPE_NAMES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def llama_config(**kw):
    cfg = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "attention_bias": False,
        "attention_dropout": 0.0,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "hidden_act": "silu",
        "hidden_size": 32,
        "intermediate_size": 64,
        "max_position_embeddings": 128,
        "mlp_bias": False,
        "num_attention_heads": 4,
        "num_hidden_layers": 2,
        "num_key_value_heads": 2,
        "pretraining_tp": 1,
        "rms_norm_eps": 1e-05,
        "rope_scaling": None,
        "rope_theta": 10000.0,
        "tie_word_embeddings": False,
        "torch_dtype": "float32",
        "use_cache": True,
        "vocab_size": 64,
    }
    cfg.update(kw)
    return cfg


def qwen2_config(**kw):
    cfg = {
        "architectures": ["Qwen2ForCausalLM"],
        "model_type": "qwen2",
        "attention_dropout": 0.0,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "hidden_act": "silu",
        "hidden_size": 32,
        "intermediate_size": 48,
        "max_position_embeddings": 256,
        "max_window_layers": 2,
        "num_attention_heads": 4,
        "num_hidden_layers": 2,
        "num_key_value_heads": 2,
        "rms_norm_eps": 1e-06,
        "rope_theta": 1000000.0,
        "sliding_window": 256,
        "tie_word_embeddings": True,
        "torch_dtype": "float32",
        "use_cache": True,
        "use_sliding_window": False,
        "vocab_size": 96,
    }
    cfg.update(kw)
    return cfg


def mistral_config(**kw):
    cfg = {
        "architectures": ["MistralForCausalLM"],
        "model_type": "mistral",
        "attention_dropout": 0.0,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "head_dim": 16,
        "hidden_act": "silu",
        "hidden_size": 32,
        "intermediate_size": 64,
        "max_position_embeddings": 256,
        "num_attention_heads": 4,
        "num_hidden_layers": 2,
        "num_key_value_heads": 2,
        "rms_norm_eps": 1e-05,
        "rope_theta": 10000.0,
        "sliding_window": 5,
        "tie_word_embeddings": False,
        "torch_dtype": "float32",
        "use_cache": True,
        "vocab_size": 80,
    }
    cfg.update(kw)
    return cfg


# name -> (config, seed, T, number of shards, what it covers)
CASES = {
    "llama_gqa": (
        llama_config(vocab_size=64),
        101, 16, 1,
        "Llama, 4 heads / 2 kv heads (GQA), untied lm_head, rope_theta 1e4, fp32",
    ),
    "llama_tied_mha": (
        llama_config(num_key_value_heads=4, tie_word_embeddings=True, vocab_size=72,
                     intermediate_size=48, rms_norm_eps=1e-06),
        102, 12, 1,
        "Llama, 4 heads / 4 kv heads (MHA), tie_word_embeddings (no lm_head.weight), fp32",
    ),
    "qwen2_bias": (
        qwen2_config(),
        103, 16, 1,
        "Qwen2, GQA 4/2, q/k/v bias (no o_proj bias), tied, rope_theta 1e6, no rope_scaling key,"
        " use_sliding_window false (sliding_window present but inactive), fp32",
    ),
    "llama3_rope": (
        llama_config(
            rope_theta=500000.0,
            rope_scaling={
                "factor": 8.0,
                "high_freq_factor": 4.0,
                "low_freq_factor": 1.0,
                "original_max_position_embeddings": 8,
                "rope_type": "llama3",
            },
            attention_bias=True,
            mlp_bias=True,
            eos_token_id=[2, 3],
            vocab_size=80,
        ),
        104, 16, 1,
        "Llama, rope_scaling llama3 (factor 8, low 1, high 4, original ctx 8: one frequency"
        " smoothly mixed, three divided by 8), rope_theta 5e5, attention_bias (q/k/v/o),"
        " mlp_bias (gate/up/down), eos_token_id given as a list, fp32",
    ),
    "llama_linear_rope": (
        llama_config(rope_scaling={"type": "linear", "factor": 2.0}, vocab_size=64),
        105, 14, 1,
        "Llama, rope_scaling linear factor 2 written with the older key \"type\", fp32",
    ),
    "llama_bf16": (
        llama_config(torch_dtype="bfloat16", vocab_size=64),
        106, 16, 1,
        "Llama GQA, torch_dtype bfloat16, all weights stored as BF16 (golden = f64 forward of"
        " the exact bf16 values)",
    ),
    "llama_sharded": (
        llama_config(vocab_size=88, intermediate_size=48),
        107, 13, 2,
        "Llama GQA, weights in 2 shards + model.safetensors.index.json, fp32",
    ),
    "mistral_headdim": (
        mistral_config(),
        108, 14, 1,
        "Mistral, explicit head_dim 16 != hidden/heads (q_proj [64,32], o_proj [32,64]),"
        " GQA 4/2, sliding_window 5 with T=14, fp32",
    ),
    "llama_fp16": (
        llama_config(torch_dtype="float16", vocab_size=64, intermediate_size=48),
        109, 12, 1,
        "Llama GQA, torch_dtype float16, all weights stored as F16",
    ),
}


def make_input_ids(cfg, seed, T):
    g = torch.Generator().manual_seed(seed + 7919)
    ids = torch.randint(0, cfg["vocab_size"], (T,), generator=g, dtype=torch.int64)
    ids[0] = cfg["bos_token_id"]
    return ids


def write_config(path, cfg):
    with open(path, "w") as f:
        f.write(json.dumps(cfg, indent=2, sort_keys=True) + "\n")


def write_model_dir(d, cfg, W, n_shards):
    os.makedirs(d, exist_ok=True)
    for fn in os.listdir(d):
        if fn.endswith(".safetensors") or fn.endswith(".json"):
            os.remove(os.path.join(d, fn))
    write_config(os.path.join(d, "config.json"), cfg)
    if n_shards == 1:
        write_safetensors(os.path.join(d, "model.safetensors"), W)
        return
    # Shard by layer as HF does: embeddings + first layers first, final norm / lm_head last.
    L = cfg["num_hidden_layers"]
    per = -(-L // n_shards)

    def shard_of(name):
        if name.startswith("model.layers."):
            return min(int(name.split(".")[2]) // per, n_shards - 1)
        return 0 if name == "model.embed_tokens.weight" else n_shards - 1

    weight_map = {}
    total = 0
    for s in range(n_shards):
        fn = "model-%05d-of-%05d.safetensors" % (s + 1, n_shards)
        part = {k: v for k, v in W.items() if shard_of(k) == s}
        total += write_safetensors(os.path.join(d, fn), part)
        for k in part:
            weight_map[k] = fn
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
        f.write(json.dumps(index, indent=2) + "\n")


def write_golden(path, input_ids, logits64):
    write_safetensors(path, {"input_ids": input_ids.to(torch.int64),
                             "logits": logits64.to(torch.float32)})


def make_fixtures(root):
    for name, (cfg, seed, T, shards, _what) in CASES.items():
        W = random_weights(cfg, seed, _DTYPE_NAMES[cfg["torch_dtype"]])
        ids = make_input_ids(cfg, seed, T)
        d = os.path.join(root, name)
        write_model_dir(d, cfg, W, shards)
        # The golden is computed from what was written, read back through the loader.
        cfg2, W2 = load_model_dir(d)
        logits = forward(cfg2, W2, ids)
        write_golden(os.path.join(d, "golden.safetensors"), ids, logits)
        print("%-18s T=%-2d V=%-3d |logits| max %.3f std %.3f" % (
            name, T, cfg["vocab_size"], logits.abs().max().item(), logits.std().item()))


# ----------------------------------------------------------------------------------------------
# sanity checks (--check)
# ----------------------------------------------------------------------------------------------


def run_checks(root):
    ok = True

    def check(cond, msg):
        nonlocal ok
        print(("  ok    " if cond else "  FAIL  ") + msg)
        ok = ok and bool(cond)

    goldens = {}
    for name, (cfg, seed, T, shards, _what) in CASES.items():
        print(name)
        d = os.path.join(root, name)
        cfg2, W = load_model_dir(d)
        G = read_safetensors(os.path.join(d, "golden.safetensors"))
        ids, gl = G["input_ids"], G["logits"]
        goldens[name] = gl
        check(cfg2 == json.loads(json.dumps(cfg)), "config.json round-trips")
        expect = {n: s for n, s, _ in param_shapes(cfg)}
        check(sorted(W) == sorted(expect), "tensor names are exactly the HF names (%d)" % len(W))
        check(all(list(W[n].shape) == s for n, s in expect.items()), "tensor shapes")
        want_dt = _DTYPE_NAMES[cfg["torch_dtype"]]
        check(all(t.dtype == want_dt for t in W.values()), "all weights stored as %s" % want_dt)
        check(ids.dtype == torch.int64 and list(ids.shape) == [T], "input_ids I64 [%d]" % T)
        check(gl.dtype == torch.float32 and list(gl.shape) == [T, cfg["vocab_size"]],
              "logits F32 [%d, %d]" % (T, cfg["vocab_size"]))
        check(bool(torch.isfinite(gl).all()), "logits finite")
        check(gl.std().item() > 0.5, "logits non-trivial (std %.3f)" % gl.std().item())
        full = forward(cfg2, W, ids)
        err = (full - gl.double()).abs().max().item()
        check(err < 1e-6, "golden == f64 forward rounded to f32 (max |diff| %.2e)" % err)
        inc = forward_incremental(cfg2, W, ids)
        err = (inc - full).abs().max().item()
        check(err < 1e-12, "token-by-token KV-cache implementation agrees (max |diff| %.2e)" % err)
        # How far HF-style lower-precision compute lands from the float64 truth (for tolerances).
        for cdt in (torch.float32, torch.bfloat16):
            e = (forward(cfg2, W, ids, cdt).double() - gl.double()).abs().max().item()
            print("  info  %s compute vs golden: max |diff| %.2e" % (str(cdt)[6:], e))
        if shards > 1:
            with open(os.path.join(d, "model.safetensors.index.json")) as f:
                idx = json.load(f)
            files = sorted(set(idx["weight_map"].values()))
            check(len(files) == shards, "%d shard files named in the index" % shards)
            total = sum(t.numel() * t.element_size() for t in W.values())
            check(idx["metadata"]["total_size"] == total, "index total_size == %d" % total)
            check(sorted(idx["weight_map"]) == sorted(W), "weight_map covers every tensor once")

    print("cross-case")
    names = list(goldens)
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            a, b = goldens[names[i]], goldens[names[j]]
            t, v = min(a.shape[0], b.shape[0]), min(a.shape[1], b.shape[1])
            d = (a[:t, :v] - b[:t, :v]).abs().max().item()
            check(d > 0.1, "%s differs from %s (max |diff| %.2f)" % (names[i], names[j], d))

    def variant(name, **changes):
        d = os.path.join(root, name)
        cfg, W = load_model_dir(d)
        ids = read_safetensors(os.path.join(d, "golden.safetensors"))["input_ids"]
        base = forward(cfg, W, ids)
        cfg = dict(cfg)
        cfg.update(changes)
        return (forward(cfg, W, ids) - base).abs().max().item(), (base, forward(cfg, W, ids))

    diff, (base, nowin) = variant("mistral_headdim", sliding_window=None)
    W5 = CASES["mistral_headdim"][0]["sliding_window"]
    check(diff > 1e-2, "sliding window changes logits vs no window (max |diff| %.3f)" % diff)
    same = (base[:W5] - nowin[:W5]).abs().max().item()
    check(same == 0.0, "...but not at positions < window (%d): max |diff| %.1e" % (W5, same))
    diff, _ = variant("llama3_rope", rope_scaling=None)
    check(diff > 1e-2, "llama3 rope scaling changes logits vs none (max |diff| %.3f)" % diff)
    diff, _ = variant("llama3_rope", rope_scaling={"rope_type": "linear", "factor": 8.0})
    check(diff > 1e-2, "llama3 scaling differs from plain linear factor 8 (max |diff| %.3f)" % diff)
    diff, _ = variant("llama_linear_rope", rope_scaling=None)
    check(diff > 1e-2, "linear rope scaling changes logits vs none (max |diff| %.3f)" % diff)
    diff, _ = variant("llama_linear_rope", rope_scaling={"rope_type": "linear", "factor": 2.0})
    check(diff == 0.0, "\"type\" and \"rope_type\" keys give the same logits")
    diff, _ = variant("qwen2_bias", model_type="llama", attention_bias=False)
    check(diff > 1e-2, "qwen2 q/k/v biases matter (max |diff| %.3f)" % diff)
    diff, _ = variant("llama_gqa", rope_theta=500000.0)
    check(diff > 1e-2, "rope_theta matters (max |diff| %.3f)" % diff)

    # llama3 inv_freq against the formula, by hand, for this config
    cfg = CASES["llama3_rope"][0]
    f = rope_inv_freq(cfg)
    f0 = rope_inv_freq(dict(cfg, rope_scaling=None))
    wl = 2 * math.pi / f0
    regimes = ["smooth" if 2.0 <= w <= 8.0 else ("low/8" if w > 8.0 else "high") for w in wl]
    print("  llama3 inv_freq: base %s -> scaled %s (%s)" % (
        [round(x, 6) for x in f0.tolist()], [round(x, 6) for x in f.tolist()], regimes))
    check(regimes.count("smooth") >= 1 and regimes.count("low/8") >= 1,
          "llama3 case exercises both the smooth and the divided regimes")

    # Cross-check the hand-written safetensors writer/reader against torch's own byte views.
    t = torch.randn(3, 5, generator=torch.Generator().manual_seed(0)).to(torch.bfloat16)
    p = os.path.join(tempfile.mkdtemp(), "check.safetensors")
    write_safetensors(p, {"b": t, "a": torch.arange(4)})
    back = read_safetensors(p)
    with open(p, "rb") as fh:
        raw = fh.read()
    os.remove(p)
    (n,) = struct.unpack("<Q", raw[:8])
    check(n % 8 == 0 and torch.equal(back["b"], t) and torch.equal(back["a"], torch.arange(4)),
          "safetensors round trip (bf16 + i64), header length %d multiple of 8" % n)
    hdr = json.loads(raw[8 : 8 + n])
    check(hdr["a"]["data_offsets"] == [0, 32] and hdr["b"]["data_offsets"] == [32, 62],
          "tensors laid out in sorted-name order")
    print("ALL CHECKS PASSED" if ok else "SOME CHECKS FAILED")
    return ok


# ----------------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out-root", default=FIXTURES, help="where the fixture model dirs go")
    ap.add_argument("--check", action="store_true", help="run the sanity checks after writing")
    ap.add_argument("--check-only", action="store_true", help="only run the sanity checks")
    ap.add_argument("--reference", metavar="DIR", help="compute golden logits for a model dir")
    ap.add_argument("--ids", help="comma-separated token ids for --reference")
    ap.add_argument("--out", help="golden file for --reference (default DIR/golden.safetensors)")
    args = ap.parse_args()
    torch.set_num_threads(1)  # reproducible reductions

    if args.reference:
        cfg, W = load_model_dir(args.reference)
        ids = torch.tensor([int(x) for x in args.ids.split(",")], dtype=torch.int64)
        logits = forward(cfg, W, ids)
        out = args.out or os.path.join(args.reference, "golden.safetensors")
        write_golden(out, ids, logits)
        print("wrote %s: T=%d V=%d, argmax %s" % (out, ids.numel(), logits.shape[1],
                                                 logits.argmax(-1).tolist()))
        return 0
    if not args.check_only:
        make_fixtures(args.out_root)
    if args.check or args.check_only:
        return 0 if run_checks(args.out_root) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
