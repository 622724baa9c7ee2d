"""A Llama-family causal LM in plain PyTorch with Hugging Face parameter names, and an HF-format
writer (config.json + model.safetensors), for the teacher-training scripts. Same math as
`src/rad/model` (RMSNorm, rotate-half RoPE, GQA in HF repeat_kv order, SwiGLU); works on
Debian's torch 1.13 and newer. Scripts only: never a runtime dependency of radistill.
"""
import json
import math
import os
import struct

import torch
import torch.nn as nn
import torch.nn.functional as F


class RMSNorm(nn.Module):
    def __init__(s, d, eps=1e-5):
        super().__init__(); s.weight = nn.Parameter(torch.ones(d)); s.eps = eps

    def forward(s, x):
        h = x.float(); h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + s.eps)
        return s.weight * h.to(x.dtype)


def rotate(x, cos, sin):
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return x * cos + torch.cat([-x2, x1], -1) * sin


class Attention(nn.Module):
    def __init__(s, d, h, hkv, dh):
        super().__init__(); s.h, s.hkv, s.dh = h, hkv, dh
        s.q_proj = nn.Linear(d, h * dh, bias=False); s.k_proj = nn.Linear(d, hkv * dh, bias=False)
        s.v_proj = nn.Linear(d, hkv * dh, bias=False); s.o_proj = nn.Linear(h * dh, d, bias=False)

    def forward(s, x, cos, sin, mask):
        B, T, _ = x.shape
        q = rotate(s.q_proj(x).view(B, T, s.h, s.dh).transpose(1, 2), cos, sin)     # [B, H, T, Dh]
        k = rotate(s.k_proj(x).view(B, T, s.hkv, s.dh).transpose(1, 2), cos, sin)   # [B, Hkv, T, Dh]
        v = s.v_proj(x).view(B, T, s.hkv, s.dh).transpose(1, 2)
        g = s.h // s.hkv
        if g > 1: k = k.repeat_interleave(g, 1); v = v.repeat_interleave(g, 1)
        att = (q @ k.transpose(-1, -2)) / math.sqrt(s.dh)
        z = att.masked_fill(mask, float("-inf")).softmax(-1) @ v
        return s.o_proj(z.transpose(1, 2).reshape(B, T, -1))


class MLP(nn.Module):
    def __init__(s, d, ff):
        super().__init__()
        s.gate_proj = nn.Linear(d, ff, bias=False); s.up_proj = nn.Linear(d, ff, bias=False)
        s.down_proj = nn.Linear(ff, d, bias=False)

    def forward(s, x): return s.down_proj(F.silu(s.gate_proj(x)) * s.up_proj(x))


class Layer(nn.Module):
    def __init__(s, d, h, hkv, dh, ff):
        super().__init__()
        s.input_layernorm = RMSNorm(d); s.self_attn = Attention(d, h, hkv, dh)
        s.post_attention_layernorm = RMSNorm(d); s.mlp = MLP(d, ff)

    def forward(s, x, cos, sin, mask):
        x = x + s.self_attn(s.input_layernorm(x), cos, sin, mask)
        return x + s.mlp(s.post_attention_layernorm(x))


class Body(nn.Module):
    def __init__(s, cfg):
        super().__init__()
        d = cfg["hidden_size"]
        s.embed_tokens = nn.Embedding(cfg["vocab_size"], d)
        s.layers = nn.ModuleList([Layer(d, cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"],
                                        cfg["intermediate_size"]) for _ in range(cfg["num_hidden_layers"])])
        s.norm = RMSNorm(d, cfg["rms_norm_eps"])


class LlamaLM(nn.Module):
    """cfg: an HF LlamaForCausalLM config dict (see llama_config)."""

    def __init__(s, cfg):
        super().__init__(); s.cfg = cfg; s.model = Body(cfg)
        if not cfg["tie_word_embeddings"]:
            s.lm_head = nn.Linear(cfg["hidden_size"], cfg["vocab_size"], bias=False)
        L = cfg["num_hidden_layers"]
        for n, prm in s.named_parameters():
            if prm.dim() == 2:
                nn.init.normal_(prm, std=0.02)
                if n.endswith("o_proj.weight") or n.endswith("down_proj.weight"):
                    with torch.no_grad(): prm.mul_(1 / math.sqrt(2 * L))

    def hidden(s, ids):  # [B, T] -> [B, T, d], after the final norm
        T = ids.shape[1]; dh = s.cfg["head_dim"]
        pos = torch.arange(T, device=ids.device).float()
        inv = 1.0 / (s.cfg["rope_theta"] ** (torch.arange(0, dh, 2, device=ids.device).float() / dh))
        e = torch.cat([pos[:, None] * inv] * 2, -1)
        mask = torch.ones(T, T, dtype=torch.bool, device=ids.device).triu(1)
        h = s.model.embed_tokens(ids)
        cos, sin = e.cos().to(h.dtype), e.sin().to(h.dtype)
        for layer in s.model.layers: h = layer(h, cos, sin, mask)
        return s.model.norm(h)

    def logits(s, h):
        w = s.model.embed_tokens.weight if s.cfg["tie_word_embeddings"] else s.lm_head.weight
        return F.linear(h, w)

    def forward(s, ids): return s.logits(s.hidden(ids))


def llama_config(vocab, d, layers, heads, kv_heads, ff, max_pos, bos, eos, tied):
    return {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": d,
            "intermediate_size": ff, "num_hidden_layers": layers, "num_attention_heads": heads,
            "num_key_value_heads": kv_heads, "head_dim": d // heads, "max_position_embeddings": max_pos,
            "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": tied, "vocab_size": vocab,
            "hidden_act": "silu", "attention_bias": False, "mlp_bias": False, "torch_dtype": "float32",
            "bos_token_id": bos, "eos_token_id": eos}


def _replace_atomically(path, write):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        write(f); f.flush(); os.fsync(f.fileno())
    os.replace(tmp, path)


def save_hf(model, path, tokenizer_dir=None):
    """Writes config.json + float32 model.safetensors (+ the tokenizer files), each atomically."""
    os.makedirs(path, exist_ok=True)
    state = {k: v.detach().float().cpu().contiguous() for k, v in model.state_dict().items()}
    header, offset = {}, 0
    for k, v in state.items():
        n = v.numel() * 4
        header[k] = {"dtype": "F32", "shape": list(v.shape), "data_offsets": [offset, offset + n]}; offset += n
    header["__metadata__"] = {"format": "pt"}
    hb = json.dumps(header, separators=(",", ":")).encode()
    hb += b" " * ((8 - len(hb) % 8) % 8)

    def write_st(f):
        f.write(struct.pack("<Q", len(hb))); f.write(hb)
        for v in state.values(): f.write(v.numpy().tobytes())
    _replace_atomically(os.path.join(path, "model.safetensors"), write_st)
    _replace_atomically(os.path.join(path, "config.json"),
                        lambda f: f.write(json.dumps(model.cfg, indent=2).encode()))
    for name in ("tokenizer.json", "tokenizer_config.json"):
        src = os.path.join(tokenizer_dir or "", name)
        if tokenizer_dir and os.path.exists(src):
            data = open(src, "rb").read()
            _replace_atomically(os.path.join(path, name), lambda f: f.write(data))
