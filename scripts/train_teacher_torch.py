#!/usr/bin/env python3
"""Trains a Llama-family teacher in PyTorch from data written by `radistill export-data`.

The C++ `radistill pretrain` is the project's trainer; this script runs the same recipe where a
GPU is available (the default teacher was trained with it on a lent H200: see its model card),
because the retrieval phase change needs far more sequences than 2 CPU cores see in an hour.
Same model as `src/rad/model` (RMSNorm, RoPE, GQA, SwiGLU, tied embeddings), same data (task rows
and probes exported by the C++ generators; corpus windows from the exported KJV tokens), AdamW
(0.9, 0.95), warmup then cosine, gradient clipping, bf16 autocast on CUDA. Writes a Hugging Face
checkpoint (config.json + model.safetensors) that `radistill` and `transformers` both load.

Task rows are augmented on the fly: each row's training keys and values are relabelled by random
bijections (keys among training keys, values among 0-99), so every row stays a valid example and
the model cannot memorise the exported rows.

  python3 scripts/train_teacher_torch.py --data DATA --tokenizer TOK --out OUT [--seconds 420] ...
"""
import argparse, json, math, os, struct, sys, time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

p = argparse.ArgumentParser()
p.add_argument("--data", required=True, help="directory written by radistill export-data")
p.add_argument("--small-data", help="optional second export with small dictionaries (curriculum)")
p.add_argument("--curriculum-fraction", type=float, default=0.25,
               help="share of training over which rows move from --small-data to --data")
p.add_argument("--tokenizer", required=True, help="directory with tokenizer.json (copied to --out)")
p.add_argument("--out", required=True)
p.add_argument("--d-model", type=int, default=256); p.add_argument("--layers", type=int, default=4)
p.add_argument("--heads", type=int, default=8); p.add_argument("--kv-heads", type=int, default=4)
p.add_argument("--ff", type=int, default=640); p.add_argument("--max-position", type=int, default=1024)
p.add_argument("--steps", type=int, default=20000); p.add_argument("--seconds", type=float, default=0,
               help="wall-clock budget; the lr schedule follows max(step/steps, elapsed/seconds)")
p.add_argument("--batch", type=int, default=64); p.add_argument("--lr", type=float, default=2e-3)
p.add_argument("--min-lr-ratio", type=float, default=0.1); p.add_argument("--warmup", type=int, default=300)
p.add_argument("--weight-decay", type=float, default=0.1); p.add_argument("--clip", type=float, default=1.0)
p.add_argument("--task-share", type=float, default=0.6); p.add_argument("--answer-weight", type=float, default=2.0)
p.add_argument("--no-augment", action="store_true"); p.add_argument("--seed", type=int, default=1)
p.add_argument("--eval-every", type=int, default=500); p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
p.add_argument("--threads", type=int, default=0)
a = p.parse_args()
if a.threads: torch.set_num_threads(a.threads)
torch.manual_seed(a.seed)
rng = np.random.default_rng(a.seed)
dev = torch.device(a.device)
use_bf16 = dev.type == "cuda"
os.makedirs(a.out, exist_ok=True)


def log(msg):
    print(f"[{a.out}] {msg}", flush=True)


# ---------------------------------------------------------------- data
def load_export(d):
    meta = json.load(open(os.path.join(d, "meta.json")))
    return meta, np.load(os.path.join(d, "tasks_ids.npy")), np.load(os.path.join(d, "tasks_answers.npy"))

meta, task_ids, task_answers = load_export(a.data)
small = load_export(a.small_data) if a.small_data else None
seq = meta["seq"]; vocab = meta["vocab_size"]; bos = meta["bos_token_id"]
corpus = np.load(os.path.join(a.data, "corpus_train.npy")).astype(np.int64)
heldout = np.load(os.path.join(a.data, "corpus_heldout.npy")).astype(np.int64)
template = set(meta["template_token_ids"])
keys = np.array([t for t in meta["train_key_token_ids"] if t not in template], dtype=np.int64)
values = np.array([t for t in meta["value_token_ids"] if t not in template], dtype=np.int64)
probes = []
for d, m in [(a.data, meta)] + ([(a.small_data, small[0])] if small else []):
    for pr in m["probes"]:
        probes.append((pr["pairs"], np.load(os.path.join(d, pr["ids"])).astype(np.int64),
                       np.load(os.path.join(d, pr["answers"])).astype(bool)))
probes.sort(key=lambda pr: pr[0])


def relabel(rows):
    """Random bijections on training keys and on values, one per row."""
    out = rows.copy()
    for r in range(out.shape[0]):
        lut = np.arange(vocab, dtype=np.int64)
        lut[keys] = keys[rng.permutation(len(keys))]
        lut[values] = values[rng.permutation(len(values))]
        out[r] = lut[out[r]]
    return out


def batch(progress):
    ids = np.empty((a.batch, seq + 1), dtype=np.int64)
    w = np.ones((a.batch, seq), dtype=np.float32)
    is_task = rng.random(a.batch) < a.task_share
    p_small = max(0.0, 1.0 - progress / a.curriculum_fraction) if small else 0.0
    for r in range(a.batch):
        if is_task[r]:
            src_ids, src_ans = (small[1], small[2]) if rng.random() < p_small else (task_ids, task_answers)
            i = rng.integers(len(src_ids))
            ids[r] = src_ids[i]
            w[r][src_ans[i].astype(bool)] = a.answer_weight
        else:
            s = rng.integers(0, len(corpus) - seq - 2)
            ids[r] = corpus[s:s + seq + 1]
            if bos is not None: ids[r, 0] = bos
    if not a.no_augment and is_task.any():
        ids[is_task] = relabel(ids[is_task])
    t = torch.from_numpy(ids).to(dev, non_blocking=True)
    return t[:, :-1], t[:, 1:], torch.from_numpy(w).to(dev, non_blocking=True)


# ---------------------------------------------------------------- model (HF Llama names)
dh = a.d_model // a.heads


class RMSNorm(nn.Module):
    def __init__(s, d):
        super().__init__(); s.weight = nn.Parameter(torch.ones(d))

    def forward(s, x):
        h = x.float(); h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + 1e-5)
        return s.weight * h.to(x.dtype)


def rotate(x, cos, sin):
    x1, x2 = x[..., : dh // 2], x[..., dh // 2:]
    return x * cos + torch.cat([-x2, x1], -1) * sin


class Attention(nn.Module):
    def __init__(s):
        super().__init__()
        s.q_proj = nn.Linear(a.d_model, a.heads * dh, bias=False)
        s.k_proj = nn.Linear(a.d_model, a.kv_heads * dh, bias=False)
        s.v_proj = nn.Linear(a.d_model, a.kv_heads * dh, bias=False)
        s.o_proj = nn.Linear(a.heads * dh, a.d_model, bias=False)

    def forward(s, h, cos, sin):
        B, T, _ = h.shape
        q = rotate(s.q_proj(h).view(B, T, a.heads, dh).transpose(1, 2), cos, sin)
        k = rotate(s.k_proj(h).view(B, T, a.kv_heads, dh).transpose(1, 2), cos, sin)
        v = s.v_proj(h).view(B, T, a.kv_heads, dh).transpose(1, 2)
        g = a.heads // a.kv_heads
        k = k.repeat_interleave(g, dim=1); v = v.repeat_interleave(g, dim=1)  # HF repeat_kv order
        if hasattr(F, "scaled_dot_product_attention"):
            z = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            att = (q @ k.transpose(-1, -2)) / math.sqrt(dh)
            mask = torch.ones(T, T, dtype=torch.bool, device=h.device).tril()
            z = att.float().masked_fill(~mask, float("-inf")).softmax(-1).to(q.dtype) @ v
        return s.o_proj(z.transpose(1, 2).reshape(B, T, -1))


class MLP(nn.Module):
    def __init__(s):
        super().__init__()
        s.gate_proj = nn.Linear(a.d_model, a.ff, bias=False); s.up_proj = nn.Linear(a.d_model, a.ff, bias=False)
        s.down_proj = nn.Linear(a.ff, a.d_model, bias=False)

    def forward(s, h):
        return s.down_proj(F.silu(s.gate_proj(h)) * s.up_proj(h))


class Layer(nn.Module):
    def __init__(s):
        super().__init__()
        s.input_layernorm = RMSNorm(a.d_model); s.self_attn = Attention()
        s.post_attention_layernorm = RMSNorm(a.d_model); s.mlp = MLP()

    def forward(s, x, cos, sin):
        x = x + s.self_attn(s.input_layernorm(x), cos, sin)
        return x + s.mlp(s.post_attention_layernorm(x))


class Body(nn.Module):
    def __init__(s):
        super().__init__()
        s.embed_tokens = nn.Embedding(vocab, a.d_model)
        s.layers = nn.ModuleList([Layer() for _ in range(a.layers)])
        s.norm = RMSNorm(a.d_model)


class LM(nn.Module):
    def __init__(s):
        super().__init__(); s.model = Body()
        for n, prm in s.named_parameters():
            if prm.dim() == 2: nn.init.normal_(prm, std=0.02)
            if n.endswith("o_proj.weight") or n.endswith("down_proj.weight"):
                with torch.no_grad(): prm.mul_(1 / math.sqrt(2 * a.layers))

    def forward(s, ids):
        T = ids.shape[1]
        pos = torch.arange(T, device=ids.device).float()
        inv = 1.0 / (10000 ** (torch.arange(0, dh, 2, device=ids.device).float() / dh))
        e = torch.cat([pos[:, None] * inv] * 2, -1)
        h = s.model.embed_tokens(ids)
        cos, sin = e.cos().to(h.dtype), e.sin().to(h.dtype)
        for l in s.model.layers: h = l(h, cos, sin)
        return F.linear(s.model.norm(h), s.model.embed_tokens.weight)


model = LM().to(dev)
n_params = sum(prm.numel() for prm in model.parameters())
decay = [prm for n, prm in model.named_parameters() if prm.dim() == 2]
no_decay = [prm for n, prm in model.named_parameters() if prm.dim() < 2]
opt_kw = {"fused": True} if dev.type == "cuda" else {}
opt = torch.optim.AdamW([{"params": decay, "weight_decay": a.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
                        lr=a.lr, betas=(0.9, 0.95), eps=1e-8, **opt_kw)


def autocast():
    return torch.autocast(dev.type, dtype=torch.bfloat16, enabled=use_bf16)


@torch.no_grad()
def evaluate():
    model.eval()
    out = {}
    for pairs, ids, ans in probes:
        correct = 0
        for b in range(0, len(ids), 50):
            x = torch.from_numpy(ids[b:b + 50]).to(dev); m = torch.from_numpy(ans[b:b + 50]).to(dev)
            x_in = x.clamp(min=0)
            with autocast(): logits = model(x_in)
            pred = logits.argmax(-1)  # pred[:, t] predicts x[:, t+1]
            ok = (pred[:, :-1] == x_in[:, 1:]) | ~m[:, 1:]
            correct += int(ok.all(1).sum())
        out[f"probe_kv{pairs}"] = correct / len(ids)
    nll = n = 0
    for s in range(0, min(len(heldout) - seq - 1, 64 * seq), seq):
        x = torch.from_numpy(heldout[s:s + seq + 1]).to(dev)[None]
        with autocast(): logits = model(x[:, :-1])
        nll += float(F.cross_entropy(logits.float()[0], x[0, 1:], reduction="sum")); n += seq
    out["heldout_ppl"] = math.exp(nll / max(n, 1))
    model.train()
    return out


# ---------------------------------------------------------------- HF checkpoint
def save_hf(path, state):
    os.makedirs(path, exist_ok=True)
    tensors = {k: v.detach().float().cpu().contiguous() for k, v in state.items()}
    header, offset = {}, 0
    for k, v in tensors.items():
        n = v.numel() * 4
        header[k] = {"dtype": "F32", "shape": list(v.shape), "data_offsets": [offset, offset + n]}; offset += n
    header["__metadata__"] = {"format": "pt"}
    hb = json.dumps(header, separators=(",", ":")).encode()
    hb += b" " * ((8 - len(hb) % 8) % 8)
    tmp = os.path.join(path, "model.safetensors.tmp")
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(hb))); f.write(hb)
        for v in tensors.values(): f.write(v.numpy().tobytes())
        f.flush(); os.fsync(f.fileno())
    os.replace(tmp, os.path.join(path, "model.safetensors"))
    cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": a.d_model,
           "intermediate_size": a.ff, "num_hidden_layers": a.layers, "num_attention_heads": a.heads,
           "num_key_value_heads": a.kv_heads, "head_dim": dh, "max_position_embeddings": a.max_position,
           "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": True, "vocab_size": vocab,
           "hidden_act": "silu", "attention_bias": False, "mlp_bias": False, "torch_dtype": "float32",
           "bos_token_id": bos, "eos_token_id": meta["eos_token_id"]}
    with open(os.path.join(path, "config.json.tmp"), "w") as f: json.dump(cfg, f, indent=2)
    os.replace(os.path.join(path, "config.json.tmp"), os.path.join(path, "config.json"))
    for name in ("tokenizer.json", "tokenizer_config.json"):
        src = os.path.join(a.tokenizer, name)
        if os.path.exists(src):
            with open(src, "rb") as f, open(os.path.join(path, name), "wb") as g: g.write(f.read())


# HF names: the tied LM head is not stored (HF convention for tie_word_embeddings).
def hf_state():
    return {k: v for k, v in model.state_dict().items()}


# ---------------------------------------------------------------- training
log(f"{n_params} parameters; {len(task_ids)} task rows; {len(corpus)} corpus tokens; device {dev}")
metrics = open(os.path.join(a.out, "metrics.jsonl"), "a")
best = (-1.0, None, None)
t0 = time.time(); tokens = 0; step = 0; loss_avg = None
while step < a.steps:
    elapsed = time.time() - t0
    progress = max(step / a.steps, elapsed / a.seconds if a.seconds else 0.0)
    if progress >= 1.0: break
    lr = a.lr * min(1.0, (step + 1) / a.warmup)
    if step >= a.warmup:
        lr = a.lr * (a.min_lr_ratio + (1 - a.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))
    for g in opt.param_groups: g["lr"] = lr
    x, y, w = batch(progress)
    with autocast(): logits = model(x)
    ce = F.cross_entropy(logits.float().reshape(-1, vocab), y.reshape(-1), reduction="none")
    loss = (ce * w.reshape(-1)).sum() / w.sum()
    opt.zero_grad(set_to_none=True); loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), a.clip); opt.step()
    step += 1; tokens += x.numel()
    if step % 50 == 0:
        lv = float(loss); loss_avg = lv if loss_avg is None else 0.9 * loss_avg + 0.1 * lv
    if step % a.eval_every == 0:
        ev = evaluate(); el = time.time() - t0
        rec = {"step": step, "tokens": tokens, "seconds": round(el, 1), "lr": lr, "loss": loss_avg, **ev}
        metrics.write(json.dumps(rec) + "\n"); metrics.flush()
        log(json.dumps(rec))
        key = min(ev.get(f"probe_kv{pr[0]}", 0) for pr in probes)
        if key > best[0]:
            best = (key, step, {k: v.detach().clone() for k, v in model.state_dict().items()})
ev = evaluate()
rec = {"step": step, "tokens": tokens, "seconds": round(time.time() - t0, 1), "final": True, **ev}
metrics.write(json.dumps(rec) + "\n"); metrics.flush(); log(json.dumps(rec))
key = min(ev.get(f"probe_kv{pr[0]}", 0) for pr in probes)
if key >= best[0]:
    best = (key, step, None)
save_hf(a.out, best[2] if best[2] is not None else hf_state())
# Reference logits of the saved weights in float32, for checking the C++ loader against this model
# (`radistill forward OUT --token-ids ... --dump-logits`) and, where installed, against transformers.
if best[2] is not None: model.load_state_dict(best[2])
model.float().eval()
check_ids = probes[0][1][0][probes[0][1][0] >= 0][:64]
with torch.no_grad():
    ref = model(torch.from_numpy(check_ids)[None].to(dev))[0].float().cpu()
np.save(os.path.join(a.out, "check_logits.npy"), ref.numpy())
with open(os.path.join(a.out, "check_ids.txt"), "w") as f: f.write(",".join(str(int(t)) for t in check_ids))
hf_diff = None
try:
    from transformers import LlamaForCausalLM
    hf = LlamaForCausalLM.from_pretrained(a.out, torch_dtype=torch.float32).to(dev).eval()
    with torch.no_grad(): hl = hf(torch.from_numpy(check_ids)[None].to(dev)).logits[0].float().cpu()
    hf_diff = float((hl - ref).abs().max()); log(f"transformers LlamaForCausalLM vs this model: max |diff| {hf_diff:.3g}")
except Exception as e:  # transformers is optional
    log(f"transformers check skipped: {e}")
summary = {"transformers_max_abs_diff": hf_diff, "params": n_params, "best_step": best[1], "best_min_probe": best[0], "steps": step, "tokens": tokens,
           "seconds": round(time.time() - t0, 1), "args": vars(a),
           "device": torch.cuda.get_device_name(0) if dev.type == "cuda" else "cpu", "torch": torch.__version__}
with open(os.path.join(a.out, "train_summary.json"), "w") as f: json.dump(summary, f, indent=2)
log("saved " + json.dumps({k: summary[k] for k in ("best_step", "best_min_probe", "steps", "seconds")}))
