#!/usr/bin/env python3
"""Recipe search for the default teacher: does a small Llama learn KV retrieval on this machine?

A throwaway-speed PyTorch experiment (Debian's python3-torch), word-level vocabulary, to find the
data mix / size / lr that makes retrieval heads form within CPU budget, before the C++ pretrain
loop runs the real thing. Usage:
  /usr/bin/python3 experiments/retrieval_recipe.py --layers 4 --d 128 --steps 3000 [--queries 8]
"""
import argparse, math, random, re, time, json, sys
import torch, torch.nn as nn, torch.nn.functional as F

p = argparse.ArgumentParser()
p.add_argument("--layers", type=int, default=4); p.add_argument("--d", type=int, default=128)
p.add_argument("--heads", type=int, default=8); p.add_argument("--kv-heads", type=int, default=4)
p.add_argument("--steps", type=int, default=3000); p.add_argument("--batch", type=int, default=32)
p.add_argument("--seq", type=int, default=256); p.add_argument("--lr", type=float, default=3e-3)
p.add_argument("--kv-share", type=float, default=0.5); p.add_argument("--queries", type=int, default=8)
p.add_argument("--max-pairs", type=int, default=24); p.add_argument("--eval-pairs", type=int, default=20)
p.add_argument("--threads", type=int, default=1); p.add_argument("--seed", type=int, default=0)
p.add_argument("--corpus", default="/tmp/kjv.txt"); p.add_argument("--log-every", type=int, default=100)
a = p.parse_args()
torch.set_num_threads(a.threads); torch.manual_seed(a.seed); rng = random.Random(a.seed)

text = open(a.corpus).read()
text = re.sub(r"^\S+ ", "", text, flags=re.M)
words = re.findall(r"[A-Za-z]+|[0-9]+|[^\sA-Za-z0-9]|\n", text)
from collections import Counter
cnt = Counter(w for w in words)
vocab = ["<unk>", "<bos>"] + [str(i) for i in range(100)] + ["Memorize", "dictionary", "value", "key", "'", ":", "\n"]
for w, _ in cnt.most_common(3000):
    if w not in vocab: vocab.append(w)
stoi = {w: i for i, w in enumerate(vocab)}
V = len(vocab)
corpus = torch.tensor([stoi.get(w, 0) for w in words])
keypool = [w for w, c in cnt.most_common(2000) if w.isalpha() and len(w) > 2 and w.lower() == w][:1200]
train_keys, eval_keys = keypool[:1000], keypool[1000:]
print(f"vocab {V}, corpus {len(corpus)} tokens, keys train {len(train_keys)} eval {len(eval_keys)}", flush=True)

def kv_tokens(keys, n, nq, r):
    ks = r.sample(keys, n); vs = r.sample(range(100), n)
    t = ["Memorize", "the", "following", "dictionary", ":", "\n"]
    for k, v in zip(ks, vs): t += [k, ":", str(v), "\n"]
    qs = r.sample(range(n), min(nq, n))
    answers = []
    for j in qs:
        t += ["The", "value", "of", "the", "key", "'", ks[j], "'", "is"]
        answers.append(len(t)); t += [str(vs[j]), "\n"]
    return [stoi.get(w, 0) for w in t], answers

def batch(step):
    xs = []
    for _ in range(a.batch):
        if rng.random() < a.kv_share:
            seq = []
            while len(seq) < a.seq + 1:
                n = rng.randint(2, a.max_pairs)
                toks, _ = kv_tokens(train_keys, n, a.queries, rng); seq += [1] + toks
            xs.append(seq[: a.seq + 1])
        else:
            s = rng.randrange(0, len(corpus) - a.seq - 2); xs.append([1] + corpus[s : s + a.seq].tolist())
    x = torch.tensor(xs)
    return x[:, :-1], x[:, 1:]

class Block(nn.Module):
    def __init__(s, d, h, hk):
        super().__init__(); s.h, s.hk, s.dh = h, hk, d // h
        s.q = nn.Linear(d, d, bias=False); s.k = nn.Linear(d, hk * s.dh, bias=False); s.v = nn.Linear(d, hk * s.dh, bias=False)
        s.o = nn.Linear(d, d, bias=False); s.n1 = nn.RMSNorm(d) if hasattr(nn, "RMSNorm") else nn.LayerNorm(d); s.n2 = nn.LayerNorm(d)
        ff = int(8 * d / 3 / 32 + 0.99) * 32
        s.g = nn.Linear(d, ff, bias=False); s.u = nn.Linear(d, ff, bias=False); s.dn = nn.Linear(ff, d, bias=False)
    def forward(s, x, cos, sin):
        B, T, _ = x.shape; h = s.n1(x)
        q = s.q(h).view(B, T, s.h, s.dh).transpose(1, 2); k = s.k(h).view(B, T, s.hk, s.dh).transpose(1, 2); v = s.v(h).view(B, T, s.hk, s.dh).transpose(1, 2)
        rot = lambda t: torch.cat([-t[..., s.dh // 2:], t[..., : s.dh // 2]], -1)
        q = q * cos + rot(q) * sin; k = k * cos + rot(k) * sin
        k = k.repeat_interleave(s.h // s.hk, 1); v = v.repeat_interleave(s.h // s.hk, 1)
        att = (q @ k.transpose(-1, -2)) / math.sqrt(s.dh)
        att = att.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf")).softmax(-1)
        x = x + s.o((att @ v).transpose(1, 2).reshape(B, T, -1))
        h = s.n2(x); return x + s.dn(F.silu(s.g(h)) * s.u(h))

class LM(nn.Module):
    def __init__(s):
        super().__init__(); s.e = nn.Embedding(V, a.d); s.blocks = nn.ModuleList([Block(a.d, a.heads, a.kv_heads) for _ in range(a.layers)])
        s.n = nn.LayerNorm(a.d); s.head = nn.Linear(a.d, V, bias=False)
        dh = a.d // a.heads; inv = 1 / (10000 ** (torch.arange(0, dh, 2).float() / dh)); f = torch.arange(1024).float()[:, None] * inv
        e = torch.cat([f, f], -1); s.register_buffer("cos", e.cos()); s.register_buffer("sin", e.sin())
    def forward(s, x):
        T = x.shape[1]; h = s.e(x)
        for b in s.blocks: h = b(h, s.cos[:T], s.sin[:T])
        return s.head(s.n(h))

m = LM(); print("params", sum(p.numel() for p in m.parameters()), flush=True)
opt = torch.optim.AdamW(m.parameters(), lr=a.lr, betas=(0.9, 0.95), weight_decay=0.1)
er = random.Random(1234)
probe = [kv_tokens(eval_keys, a.eval_pairs, 1, er) for _ in range(100)]

def evaluate():
    m.eval(); ok = 0
    with torch.no_grad():
        for toks, ans in probe:
            x = torch.tensor([[1] + toks[: ans[0]]]); ok += int(m(x)[0, -1].argmax() == toks[ans[0]])
    m.train(); return ok / len(probe)

t0 = time.time()
for step in range(1, a.steps + 1):
    lr = a.lr * min(1, step / 100) * (0.5 * (1 + math.cos(math.pi * min(1, step / a.steps))) * 0.9 + 0.1)
    for g in opt.param_groups: g["lr"] = lr
    x, y = batch(step); loss = F.cross_entropy(m(x).reshape(-1, V), y.reshape(-1))
    opt.zero_grad(); loss.backward(); torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0); opt.step()
    if step % a.log_every == 0:
        print(json.dumps({"step": step, "loss": round(loss.item(), 3), "probe": evaluate(),
                          "tok_s": round(step * a.batch * a.seq / (time.time() - t0))}), flush=True)
