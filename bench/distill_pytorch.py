#!/usr/bin/env python3
"""Reference: `radistill distill`'s two stages in plain PyTorch (Debian's python3-torch), for the
throughput comparison with radistill (bench/distill_vs_pytorch.sh).

Mirrors src/rad/distill/distill.cpp step for step, in float32:
- teacher: scripts/llama_torch.py's LlamaLM with the teacher directory's weights (random weights
  of its shape with --random-teacher), frozen, run without gradients;
- student: the converted hybrid (a `radistill convert` directory: its config.json gives the head
  plan and the SSM options, its model.safetensors the weights, loaded strictly, so names and
  shapes are the C++ student's): kept heads are softmax attention (RoPE, GQA, their KV groups
  only), the others Mamba-2 / SSD heads (x/B/C projections, log decay -softplus(a_proj(u)), D skip,
  optional conv and gate) computed with the same chunked scan (same chunk size, same einsums);
  heads put back in the teacher's order before o_proj;
- align stage: the teacher's residual stream before and after every layer (no logits); each
  student layer is run on the teacher's input of that layer; loss = sum over layers of the mean
  over tokens of ||student out - teacher out||_2; only `.self_attn.ssm.` parameters train;
- KD stage: teacher logits, student logits, KL(teacher || student) per token, mean; everything but
  the (tied) embedding trains;
- AdamW (0.9, 0.95), eps 1e-8, weight decay 0.1 except norms and biases, a fresh optimizer per
  stage, gradient clipping at 1.0, the learning rate set every step (as the schedule does).
Random token batches (radistill's steps also build their batches from the corpus; not measured
here). Prints tokens/s per stage (wall clock, and per CPU second of this process, which a busy
machine disturbs less) and the parameter counts as JSON.
  /usr/bin/python3 bench/distill_pytorch.py --student DIR [--teacher DIR] [--steps N] [--threads K]
"""
import argparse, json, math, os, struct, sys, time

p = argparse.ArgumentParser()
p.add_argument("--teacher", default="models/default-teacher")
p.add_argument("--student", required=True, help="hybrid directory from `radistill convert`")
p.add_argument("--random-teacher", action="store_true", help="random weights of the teacher's shape")
p.add_argument("--batch", type=int, default=16); p.add_argument("--seq", type=int, default=256)
p.add_argument("--steps", type=int, default=20); p.add_argument("--warmup-steps", type=int, default=5)
p.add_argument("--stages", default="align,kd"); p.add_argument("--threads", type=int, default=1)
p.add_argument("--lr", type=float, default=1e-3); p.add_argument("--weight-decay", type=float, default=0.1)
p.add_argument("--clip", type=float, default=1.0)
p.add_argument("--check-ids", help="comma-separated token ids: compare both models' logits on them with radistill's")
p.add_argument("--check-student-logits", help="`radistill forward STUDENT --token-ids IDS --dump-logits` .npy")
p.add_argument("--check-teacher-logits", help="the same for the teacher")
a = p.parse_args()
# OpenBLAS (Debian's torch uses it) follows OpenMP's thread count; pin both before torch loads.
os.environ.setdefault("OMP_NUM_THREADS", str(a.threads)); os.environ.setdefault("OPENBLAS_NUM_THREADS", str(a.threads))

import torch, torch.nn as nn, torch.nn.functional as F  # noqa: E402
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts"))
from llama_torch import LlamaLM, RMSNorm, MLP, rotate  # noqa: E402

torch.set_num_threads(a.threads); torch.manual_seed(0)


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]; header = json.loads(f.read(n)); data = f.read()
    out = {}
    for k, v in header.items():
        if k == "__metadata__": continue
        assert v["dtype"] == "F32", f"{k}: {v['dtype']} (this reader takes float32 only)"
        b, e = v["data_offsets"]
        out[k] = torch.frombuffer(bytearray(data[b:e]), dtype=torch.float32).reshape(v["shape"])
    return out


# ---- the student: the hybrid of src/rad/model/hybrid_mixer.cpp and ssm.cpp ----

def segsum(x):  # out[..., t, s] = sum_{k=s+1..t} x[k] for s <= t, -inf above the diagonal
    L = x.shape[-1]; cs = x.cumsum(-1)
    diff = cs.unsqueeze(-1) - cs.unsqueeze(-2)
    causal = torch.ones(L, L, dtype=torch.bool).tril()
    return diff.masked_fill(causal.logical_not(), float("-inf"))


def ssd_chunked(x, a, Bm, Cm, chunk):  # x [B,T,H,P], a [B,T,H], B/C [B,T,H,N]; zero initial state
    Bsz, T, H, P = x.shape; N = Bm.shape[3]
    Lc = min(chunk, max(T, 1)); nc = (T + Lc - 1) // Lc; pad = nc * Lc - T
    if pad > 0:
        x = F.pad(x, (0, 0, 0, 0, 0, pad)); a = F.pad(a, (0, 0, 0, pad))
        Bm = F.pad(Bm, (0, 0, 0, 0, 0, pad)); Cm = F.pad(Cm, (0, 0, 0, 0, 0, pad))
    x = x.reshape(Bsz, nc, Lc, H, P); Bm = Bm.reshape(Bsz, nc, Lc, H, N); Cm = Cm.reshape(Bsz, nc, Lc, H, N)
    A = a.reshape(Bsz, nc, Lc, H).permute(0, 3, 1, 2)                       # [B, H, c, l]
    A_cs = A.cumsum(-1)
    L = segsum(A).exp()                                                     # [B, H, c, l, s]
    CB = torch.einsum("bclhn,bcshn->bhcls", Cm, Bm)
    y_diag = torch.einsum("bhcls,bcshp->bclhp", CB * L, x)
    decay_states = (A_cs[..., Lc - 1:Lc] - A_cs).exp()                      # [B, H, c, l]
    states = torch.einsum("bclhn,bhcl,bclhp->bchpn", Bm, decay_states, x)  # [B, c, H, P, N]
    init = torch.zeros(Bsz, 1, H, P, N, dtype=x.dtype)
    states = torch.cat([init, states], 1)
    chunk_decay = F.pad(A_cs[..., Lc - 1], (1, 0))                          # [B, H, c+1]
    decay_chunk = segsum(chunk_decay).exp()
    new_states = torch.einsum("bhzc,bchpn->bzhpn", decay_chunk, states)
    entering = new_states[:, :nc]
    y_off = torch.einsum("bclhn,bchpn,bhcl->bclhp", Cm, entering, A_cs.exp())
    y = (y_diag + y_off).reshape(Bsz, nc * Lc, H, P)
    return y[:, :T] if pad > 0 else y


class SsmHeads(nn.Module):
    def __init__(s, d, h, dh, o):
        super().__init__(); s.h, s.dh, s.n, s.o = h, dh, o["d_state"], o
        s.x_proj = nn.Linear(d, h * dh, bias=o["bias"]); s.B_proj = nn.Linear(d, h * s.n, bias=o["bias"])
        s.C_proj = nn.Linear(d, h * s.n, bias=o["bias"]); s.a_proj = nn.Linear(d, h, bias=True)
        s.D = nn.Parameter(torch.zeros(h))
        if o["conv"]: s.conv_weight = nn.Parameter(torch.zeros(h * (dh + 2 * s.n), o["conv_width"]))
        if o["gate"]: s.z_proj = nn.Linear(d, h * dh, bias=True)

    def forward(s, u):
        Bsz, T, _ = u.shape; H, P, N = s.h, s.dh, s.n
        xs, bs, cs = s.x_proj(u), s.B_proj(u), s.C_proj(u)
        if s.o["conv"]:  # depthwise causal conv over [x | B | C], no activation
            W = s.o["conv_width"]; xbc = torch.cat([xs, bs, cs], -1)
            padded = torch.cat([xbc.new_zeros(Bsz, W - 1, xbc.shape[-1]), xbc], 1)
            out = padded[:, 0:T] * s.conv_weight[:, 0]
            for k in range(1, W): out = out + padded[:, k:k + T] * s.conv_weight[:, k]
            xs, bs, cs = out[..., :H * P], out[..., H * P:H * P + H * N], out[..., H * P + H * N:]
        x4 = xs.reshape(Bsz, T, H, P)
        log_alpha = -F.softplus(s.a_proj(u))
        y = ssd_chunked(x4, log_alpha, bs.reshape(Bsz, T, H, N), cs.reshape(Bsz, T, H, N), s.o["chunk_size"])
        y = y + s.D.view(1, 1, H, 1) * x4
        if s.o["gate"]: y = y * F.silu(s.z_proj(u).view(Bsz, T, H, P))
        return y


def grouped_attention(q, k, v, allowed):  # q [B,T,H,D], k/v [B,Hkv,S,D] -> [B,T,H,D]
    B, T, H, D = q.shape; Hkv = k.shape[1]
    qg = q.transpose(1, 2).reshape(B, Hkv, H // Hkv, T, D)
    scores = (qg @ k.unsqueeze(2).transpose(-1, -2)) / math.sqrt(D)
    probs = scores.masked_fill(allowed.logical_not(), float("-inf")).softmax(-1)
    return (probs @ v.unsqueeze(2)).reshape(B, H, T, D).transpose(1, 2)


class HybridMixer(nn.Module):
    def __init__(s, cfg, layer):
        super().__init__()
        d, s.nh, s.dh = cfg["hidden_size"], cfg["num_attention_heads"], cfg["head_dim"]
        plan = cfg["head_plan"]; group_size = s.nh // cfg["num_key_value_heads"]
        s.kept = sorted(h for l, h in plan["kept_heads"] if l == layer)
        s.groups = sorted(plan["kv_groups"].get(str(layer), []))
        s.ssm_heads = [h for h in range(s.nh) if h not in s.kept]
        nk, ng = len(s.kept), len(s.groups)
        if nk:
            s.q_proj = nn.Linear(d, nk * s.dh, bias=False); s.k_proj = nn.Linear(d, ng * s.dh, bias=False)
            s.v_proj = nn.Linear(d, ng * s.dh, bias=False)
        s.o_proj = nn.Linear(s.nh * s.dh, d, bias=False)
        if s.ssm_heads: s.ssm = SsmHeads(d, len(s.ssm_heads), s.dh, cfg["ssm"])
        local = {g: i for i, g in enumerate(s.groups)}
        h2g = [local[h // group_size] for h in s.kept]
        s.uniform = all(h2g.count(g) == h2g.count(h2g[0]) for g in set(h2g)) if h2g else True
        s.register_buffer("h2g", torch.tensor(h2g, dtype=torch.long), persistent=False)
        order = [0] * s.nh
        for i, h in enumerate(s.kept): order[h] = i
        for i, h in enumerate(s.ssm_heads): order[h] = nk + i
        s.register_buffer("order", torch.tensor(order, dtype=torch.long), persistent=False)

    def forward(s, x, cos, sin, allowed):
        B, T, _ = x.shape; nk, ng = len(s.kept), len(s.groups); parts = []
        if nk:
            q = rotate(s.q_proj(x).view(B, T, nk, s.dh), cos, sin)
            k = rotate(s.k_proj(x).view(B, T, ng, s.dh), cos, sin).transpose(1, 2)
            v = s.v_proj(x).view(B, T, ng, s.dh).transpose(1, 2)
            if not s.uniform: k, v = k.index_select(1, s.h2g), v.index_select(1, s.h2g)
            parts.append(grouped_attention(q, k, v, allowed))
        if s.ssm_heads: parts.append(s.ssm(x))
        z = parts[0] if len(parts) == 1 else torch.cat(parts, 2)
        if nk and s.ssm_heads: z = z.index_select(2, s.order)
        return s.o_proj(z.reshape(B, T, s.nh * s.dh))


class HybridLayer(nn.Module):
    def __init__(s, cfg, layer):
        super().__init__(); d = cfg["hidden_size"]
        s.input_layernorm = RMSNorm(d, cfg["rms_norm_eps"]); s.self_attn = HybridMixer(cfg, layer)
        s.post_attention_layernorm = RMSNorm(d, cfg["rms_norm_eps"]); s.mlp = MLP(d, cfg["intermediate_size"])

    def forward(s, x, cos, sin, allowed):
        h = x + s.self_attn(s.input_layernorm(x), cos, sin, allowed)
        return h + s.mlp(s.post_attention_layernorm(h))


class HybridBody(nn.Module):
    def __init__(s, cfg):
        super().__init__(); d = cfg["hidden_size"]
        s.embed_tokens = nn.Embedding(cfg["vocab_size"], d)
        s.layers = nn.ModuleList([HybridLayer(cfg, l) for l in range(cfg["num_hidden_layers"])])
        s.norm = RMSNorm(d, cfg["rms_norm_eps"])


class HybridLM(nn.Module):
    def __init__(s, cfg):
        super().__init__(); s.cfg = cfg; s.model = HybridBody(cfg)
        if not cfg["tie_word_embeddings"]: s.lm_head = nn.Linear(cfg["hidden_size"], cfg["vocab_size"], bias=False)

    def tables(s, T):  # rope [T, D] broadcast over [B, T, H, D]; allowed [T, T]
        dh = s.cfg["head_dim"]; pos = torch.arange(T).float()
        inv = 1.0 / (s.cfg["rope_theta"] ** (torch.arange(0, dh, 2).float() / dh))
        e = torch.cat([pos[:, None] * inv] * 2, -1)
        return e.cos()[None, :, None, :], e.sin()[None, :, None, :], torch.ones(T, T, dtype=torch.bool).tril()

    def run_layer(s, l, h):
        cos, sin, allowed = s.tables(h.shape[1])
        return s.model.layers[l](h, cos, sin, allowed)

    def forward(s, ids):
        cos, sin, allowed = s.tables(ids.shape[1]); h = s.model.embed_tokens(ids)
        for layer in s.model.layers: h = layer(h, cos, sin, allowed)
        h = s.model.norm(h)
        return F.linear(h, s.model.embed_tokens.weight if s.cfg["tie_word_embeddings"] else s.lm_head.weight)


# ---- the teacher: scripts/llama_torch.py ----

def teacher_residuals(t, ids):  # (inputs, outputs) of every layer, as LlamaLM.hidden computes them
    T = ids.shape[1]; dh = t.cfg["head_dim"]
    pos = torch.arange(T).float()
    inv = 1.0 / (t.cfg["rope_theta"] ** (torch.arange(0, dh, 2).float() / dh))
    e = torch.cat([pos[:, None] * inv] * 2, -1)
    mask = torch.ones(T, T, dtype=torch.bool).triu(1)
    h = t.model.embed_tokens(ids); cos, sin = e.cos(), e.sin(); ins, outs = [], []
    for layer in t.model.layers:
        ins.append(h); h = layer(h, cos, sin, mask); outs.append(h)
    return ins, outs


tcfg = json.load(open(os.path.join(a.teacher, "config.json")))
teacher = LlamaLM(tcfg)
if not a.random_teacher: teacher.load_state_dict(read_safetensors(os.path.join(a.teacher, "model.safetensors")))
teacher.eval()
for q in teacher.parameters(): q.requires_grad_(False)
scfg = json.load(open(os.path.join(a.student, "config.json")))
student = HybridLM(scfg)
converted = read_safetensors(os.path.join(a.student, "model.safetensors"))
student.load_state_dict(converted)  # strict: the same parameter names and shapes as radistill's student
student.train()
V = scfg["vocab_size"]; n_layer = scfg["num_hidden_layers"]


def trainable(stage, n):
    if stage == "align": return ".self_attn.ssm." in n
    return "embed_tokens" not in n and not n.startswith("lm_head")


def make_adamw(stage):  # src/rad/train/optim.cpp: decay / no_decay (norms, biases)
    decay, no_decay, count = [], [], 0
    for n, q in student.named_parameters():
        q.requires_grad_(trainable(stage, n))
        if not q.requires_grad: continue
        count += q.numel()
        (no_decay if "norm" in n or n.endswith(".bias") else decay).append(q)
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": a.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=a.lr, betas=(0.9, 0.95), eps=1e-8)
    return opt, count


def step(stage, opt):
    ids = torch.randint(V, (a.batch, a.seq))
    for g in opt.param_groups: g["lr"] = a.lr
    if stage == "align":
        with torch.no_grad(): t_in, t_out = teacher_residuals(teacher, ids)
        loss = None
        for l in range(n_layer):
            err = (student.run_layer(l, t_in[l]) - t_out[l]).norm(2, -1).mean()
            loss = err if loss is None else loss + err
    else:
        with torch.no_grad(): t_logits = teacher(ids)
        s_logits = student(ids)
        log_p = F.log_softmax(t_logits.reshape(-1, V), -1); log_q = F.log_softmax(s_logits.reshape(-1, V), -1)
        loss = (log_p.exp() * (log_p - log_q)).sum(-1).mean()
    opt.zero_grad(); loss.backward()
    value = loss.item()
    assert math.isfinite(value), f"{stage}: loss {value}"
    torch.nn.utils.clip_grad_norm_(student.parameters(), a.clip); opt.step()
    return value


check = {}
if a.check_ids:  # the same function as radistill's models: max |logit difference| on the given ids
    import numpy as np
    ids = torch.tensor([[int(x) for x in a.check_ids.split(",")]])
    with torch.no_grad():
        for name, model, path in (("student", student, a.check_student_logits), ("teacher", teacher, a.check_teacher_logits)):
            if path: check[name] = float((model(ids)[0] - torch.from_numpy(np.load(path))).abs().max())

result = {"impl": "pytorch", "torch": torch.__version__, "threads": torch.get_num_threads(), "batch": a.batch,
          "seq": a.seq, "steps": a.steps, "warmup_steps": a.warmup_steps,
          "teacher_params": sum(q.numel() for q in teacher.parameters()),
          "student_params": sum(q.numel() for q in student.parameters()),
          "converted_student_params": sum(t.numel() for t in converted.values()),
          "random_teacher": a.random_teacher, "logits_max_abs_diff_vs_radistill": check}
for stage in a.stages.split(","):
    opt, count = make_adamw(stage)
    result[f"{stage}_trainable_params"] = count
    first = None
    for _ in range(a.warmup_steps):
        v = step(stage, opt); first = v if first is None else first
    t, c = time.perf_counter(), time.process_time()
    for _ in range(a.steps): last = step(stage, opt)
    s, cpu = time.perf_counter() - t, time.process_time() - c
    result[f"{stage}_tokens_per_s"] = a.steps * a.batch * a.seq / s
    result[f"{stage}_tokens_per_cpu_s"] = a.steps * a.batch * a.seq / cpu  # robust to a busy machine
    result[f"{stage}_loss_first_last"] = [first, last]
print(json.dumps(result))
