#!/usr/bin/env python3
"""Reference: the default teacher's pretraining step in PyTorch (Debian's python3-torch), for the
throughput comparison with `radistill pretrain` (bench/pretrain_vs_pytorch.sh).

Same model as the C++ loop (Llama: RMSNorm, RoPE, GQA, SwiGLU, tied embeddings), same batch, same
optimizer (AdamW 0.9/0.95, weight decay on matrices), same loss (token cross-entropy), random
token batches (data loading is not what is measured). Prints tokens/s as JSON.
  /usr/bin/python3 bench/pretrain_pytorch.py [--bf16] [--steps N] [--threads K]
"""
import argparse, json, math, time
import torch, torch.nn as nn, torch.nn.functional as F

p = argparse.ArgumentParser()
p.add_argument("--vocab", type=int, default=4096); p.add_argument("--d", type=int, default=128)
p.add_argument("--layers", type=int, default=6); p.add_argument("--heads", type=int, default=8)
p.add_argument("--kv-heads", type=int, default=4); p.add_argument("--ff", type=int, default=384)
p.add_argument("--batch", type=int, default=16); p.add_argument("--seq", type=int, default=256)
p.add_argument("--steps", type=int, default=30); p.add_argument("--warmup-steps", type=int, default=5)
p.add_argument("--threads", type=int, default=2); p.add_argument("--bf16", action="store_true")
a = p.parse_args()
torch.set_num_threads(a.threads); torch.manual_seed(0)
dh = a.d // a.heads

class RMSNorm(nn.Module):
    def __init__(s, d): super().__init__(); s.weight = nn.Parameter(torch.ones(d))
    def forward(s, x):
        h = x.float(); h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + 1e-5); return s.weight * h.to(x.dtype)

def rope(x, cos, sin):
    x1, x2 = x[..., : dh // 2], x[..., dh // 2 :]
    return x * cos + torch.cat([-x2, x1], -1) * sin

class Block(nn.Module):
    def __init__(s):
        super().__init__()
        s.q = nn.Linear(a.d, a.heads * dh, bias=False); s.k = nn.Linear(a.d, a.kv_heads * dh, bias=False)
        s.v = nn.Linear(a.d, a.kv_heads * dh, bias=False); s.o = nn.Linear(a.heads * dh, a.d, bias=False)
        s.g = nn.Linear(a.d, a.ff, bias=False); s.u = nn.Linear(a.d, a.ff, bias=False); s.dn = nn.Linear(a.ff, a.d, bias=False)
        s.n1 = RMSNorm(a.d); s.n2 = RMSNorm(a.d)
    def forward(s, x, cos, sin, mask):
        B, T, _ = x.shape; h = s.n1(x)
        q = rope(s.q(h).view(B, T, a.heads, dh), cos, sin).transpose(1, 2)
        k = rope(s.k(h).view(B, T, a.kv_heads, dh), cos, sin).transpose(1, 2)
        v = s.v(h).view(B, T, a.kv_heads, dh).transpose(1, 2)
        g = a.heads // a.kv_heads
        q = q.reshape(B, a.kv_heads, g, T, dh)
        att = (q @ k.unsqueeze(2).transpose(-1, -2)) / math.sqrt(dh)
        att = att.float().masked_fill(~mask, float("-inf")).softmax(-1).to(q.dtype)
        z = (att @ v.unsqueeze(2)).reshape(B, a.heads, T, dh).transpose(1, 2).reshape(B, T, -1)
        x = x + s.o(z); h = s.n2(x)
        return x + s.dn(F.silu(s.g(h)) * s.u(h))

class LM(nn.Module):
    def __init__(s):
        super().__init__(); s.embed = nn.Embedding(a.vocab, a.d); s.layers = nn.ModuleList([Block() for _ in range(a.layers)])
        s.norm = RMSNorm(a.d)
    def forward(s, ids):
        T = ids.shape[1]; pos = torch.arange(T).float()
        inv = 1.0 / (10000 ** (torch.arange(0, dh, 2).float() / dh)); f = pos[:, None] * inv
        e = torch.cat([f, f], -1); cos, sin = e.cos()[None, :, None, :], e.sin()[None, :, None, :]
        mask = torch.ones(T, T, dtype=torch.bool).tril()
        h = s.embed(ids)
        for l in s.layers: h = l(h, cos.to(h.dtype), sin.to(h.dtype), mask)
        return F.linear(s.norm(h), s.embed.weight)

m = LM()
decay = [p for n, p in m.named_parameters() if "norm" not in n]
no_decay = [p for n, p in m.named_parameters() if "norm" in n]
opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                        lr=1e-3, betas=(0.9, 0.95), eps=1e-8)
def step():
    ids = torch.randint(a.vocab, (a.batch, a.seq + 1))
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.bf16):
        logits = m(ids[:, :-1])
    loss = F.cross_entropy(logits.float().reshape(-1, a.vocab), ids[:, 1:].reshape(-1))
    opt.zero_grad(); loss.backward(); torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0); opt.step()
for _ in range(a.warmup_steps): step()
t = time.time()
for _ in range(a.steps): step()
s = time.time() - t
print(json.dumps({"impl": "pytorch", "bf16": a.bf16, "tokens_per_s": a.steps * a.batch * a.seq / s,
                  "params": sum(p.numel() for p in m.parameters()), "torch": torch.__version__, "threads": a.threads}))
