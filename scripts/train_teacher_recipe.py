#!/usr/bin/env python3
"""Trains the default teacher with the retrieval recipe of docs/DESIGN.md section 11c (run H), carried to
the project's real tokenizer and extended so that held-out keys work (issue 13).

What a batch holds (shares are flags; the rest of the task rows are paper-format rows):
  copy     BOS span SEP span          loss on the copy; spans drawn from *every* single-token word
                                      (training keys, held-out keys, other corpus words) and values,
                                      so every key token is a trained input in probe form
  compact  BOS K V K V ... SEP K V    Zoology-style MQAR, loss on the queried values
  offset   BOS K : V K NL ...         dictionary-style offset rows, loss on the repeated key
  paper    the probe's own format     "Memorize the following dictionary:\nK:V\n...The value of the
                                      key 'K' is V", every pair (up to --max-queries) queried,
                                      loss on the answers only
  corpus   KJV windows                full next-token loss (a stage-dependent share)
Task keys come from the *training* key pool only: the 800 training key words of
src/rad/tasks/key_words.cpp plus half of the other single-token corpus words. The 200 evaluation
key words and the other half of the corpus words are never task keys; they are what the held-out
probes use.

Curriculum: stages "max_pairs:corpus_share[:suffix]" (default 8:0,20:0.1,50:0.2). Pairs per row are
drawn from [2, max_pairs]. `suffix` (0-3, default 3) is how many tokens of the query's "' is SP"
stand between the key and the value in the probe-format rows: 3 is the paper format; 0 puts the
value right after the queried key (as in compact MQAR), so a format curriculum 0 -> 1 -> 2 -> 3
moves the value one token further from its key at a time. The run moves to the next stage when
accuracy on training keys (paper probe at the current max_pairs; at suffix < 3 the same rows with
the shortened query) reaches --advance-at (measured at each evaluation; deterministic).

Tied input/output embeddings (untied ones stalled copying: docs/teacher-recipe.md) with no weight
decay on embeddings and norms (the collapse of docs/DESIGN.md section 11b came from tied embeddings + decay + keys
that were never inputs; here copy spans make every key an input and a target). AdamW (0.9, 0.95), constant lr after warm-up,
clipping 1.0. A batch is a pure function of (seed, step), the checkpoint holds model, optimizer
and curriculum stage, so --resume continues exactly. Debian's python3-torch, CPU, 1 thread by
default. Writes OUT/ckpt.pt (resume), OUT/metrics.jsonl, and OUT/hf (HF checkpoint, the best
evaluation so far by the held-out worst case).

  /usr/bin/python3 scripts/train_teacher_recipe.py --out runs/teacher [--resume] [--steps 20000]
"""
import argparse, json, math, os, re, sys, time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from llama_torch import LlamaLM, llama_config, save_hf  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
p.add_argument("--out", required=True)
p.add_argument("--tokenizer", default=os.path.join(ROOT, "models/default-teacher"))
p.add_argument("--corpus", default=os.path.join(ROOT, "data/kjv.txt"))
p.add_argument("--d-model", type=int, default=128); p.add_argument("--layers", type=int, default=6)
p.add_argument("--heads", type=int, default=8); p.add_argument("--kv-heads", type=int, default=4)
p.add_argument("--ff", type=int, default=384); p.add_argument("--max-position", type=int, default=1024)
p.add_argument("--tied", action="store_true", help="tie input and output embeddings (the default; kept for old commands)")
p.add_argument("--untied", action="store_true", help="separate lm_head (measured: stalls copying, docs/teacher-recipe.md)")
p.add_argument("--steps", type=int, default=20000); p.add_argument("--batch", type=int, default=64)
p.add_argument("--max-tokens", type=int, default=8192, help="cap on padded tokens per batch (long rows: fewer rows)")
p.add_argument("--lr", type=float, default=3e-3); p.add_argument("--warmup", type=int, default=100)
p.add_argument("--weight-decay", type=float, default=0.1); p.add_argument("--clip", type=float, default=1.0)
p.add_argument("--copy", type=float, default=0.25); p.add_argument("--compact", type=float, default=0.15)
p.add_argument("--offset", type=float, default=0.15)
p.add_argument("--stages", default="8:0,20:0.1,50:0.2")
p.add_argument("--advance-at", type=float, default=0.9)
p.add_argument("--heldout-copy-stage", type=int, default=0,
               help="curriculum stage from which copy spans also draw held-out words (earlier: training keys only; "
                    "docs/DESIGN.md section 11c runs H/I: the lookup formed with training-key spans, not with all-word spans)")
p.add_argument("--max-queries", type=int, default=16)
p.add_argument("--seed", type=int, default=1); p.add_argument("--threads", type=int, default=1)
p.add_argument("--eval-every", type=int, default=200); p.add_argument("--eval-examples", type=int, default=100)
p.add_argument("--resume", action="store_true")
p.add_argument("--init-from", help="start from the model and optimizer of another run's ckpt.pt (step and stage start at 0)")
a = p.parse_args()
torch.set_num_threads(a.threads)
os.makedirs(a.out, exist_ok=True)
stages = [(int(f[0]), float(f[1]), int(f[2]) if len(f) > 2 else 3) for f in (x.split(":") for x in a.stages.split(","))]
assert all(0 <= st[2] <= 3 for st in stages), f"--stages: suffix must be 0-3, got {a.stages}"


def log(msg): print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ------------------------------------------------------------------ tokenizer (encode only)
# A minimal byte-level BPE encoder for the fixed template strings and single words: enough for the
# probe's text (ASCII), checked against `radistill tokenize` by tests/python/check_recipe_tokens.py.
tok = json.load(open(os.path.join(a.tokenizer, "tokenizer.json")))
vocab = tok["model"]["vocab"]
merges = {tuple(m.split(" ") if isinstance(m, str) else m): i for i, m in enumerate(tok["model"]["merges"])}
added = {t["content"]: t["id"] for t in tok["added_tokens"]}
bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
cs = bs[:]; n_ = 0
for b in range(256):
    if b not in bs: bs.append(b); cs.append(256 + n_); n_ += 1
BYTE = {b: chr(c) for b, c in zip(bs, cs)}
PRETOK = re.compile(r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\w]?[^\W\d_]+|\d{1,3}| ?[^\s\w]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")


def bpe(piece):
    word = "".join(BYTE[b] for b in piece.encode())
    if word in vocab: return [vocab[word]]  # ignore_merges
    parts = list(word)
    while len(parts) > 1:
        ranked = [(merges.get((parts[i], parts[i + 1]), 1 << 30), i) for i in range(len(parts) - 1)]
        r, i = min(ranked)
        if r == 1 << 30: break
        parts = parts[:i] + [parts[i] + parts[i + 1]] + parts[i + 2:]
    return [vocab[x] for x in parts]


def encode(text): return [t for piece in PRETOK.findall(text) for t in bpe(piece)]


V = len(vocab) + len([t for t in added.values() if t >= len(vocab)])
V = max(V, max(vocab.values()) + 1, max(added.values()) + 1)
BOS = added.get("<|begin_of_text|>"); EOS = added.get("<|end_of_text|>")
HDR = encode("Memorize the following dictionary:\n")
COL, NL = encode(":")[0], encode("\n")[0]
QPRE = encode("The value of the key '")          # then K
QPOST = encode("' is")                            # then the answer " V" = SP V
SP = encode(" ")[0]
SEP = encode("|")[0]
VALUES = np.array([encode(str(v))[0] for v in range(100)])
assert all(len(encode(str(v))) == 1 for v in range(100)), "values 0-99 must be single tokens"
assert len(encode(" 7")) == 2 and encode(" 7")[0] == SP, "the answer ' V' is expected as SP V"

# ------------------------------------------------------------------ key pools
src = open(os.path.join(ROOT, "src/rad/tasks/key_words.cpp")).read()
key_words = re.findall(r'"([a-z]+)"', src[src.index("words = {"):])
assert len(key_words) == 1000, len(key_words)
train_words = [w for i, w in enumerate(key_words) if i % 5 != 4]
eval_words = [w for i, w in enumerate(key_words) if i % 5 == 4]
corpus_text = open(a.corpus).read()
counts = {}
for w in re.findall(r"[a-z]+", corpus_text): counts[w] = counts.get(w, 0) + 1
kw = set(key_words)
other = sorted((w for w, c in counts.items() if c >= 5 and len(w) >= 2 and w not in kw and len(encode(w)) == 1),
               key=lambda w: (-counts[w], w))
other_train, other_heldout = other[0::2], other[1::2]


def ids_of(words):
    out = []
    for w in words:
        e = encode(w)
        assert len(e) == 1, f"key {w!r} is not one token"
        out.append(e[0])
    return np.array(out)


KEYS_TRAIN = np.concatenate([ids_of(train_words), ids_of(other_train)])
KEYS_EVAL = ids_of(eval_words)
KEYS_OTHER = ids_of(other_heldout)
ALL_WORDS = np.concatenate([KEYS_TRAIN, KEYS_EVAL, KEYS_OTHER])
json.dump({"train_key_words": train_words + other_train, "eval_key_words": eval_words,
           "heldout_other_words": other_heldout}, open(os.path.join(a.out, "key_pools.json"), "w"), indent=1)

# corpus tokens (last 2% of lines held out, as `radistill pretrain` and the card do)
lines = corpus_text.splitlines(keepends=True)
cut = len(lines) - int(0.02 * len(lines))
cache = os.path.join(a.out, "corpus_tokens.npz")
if os.path.exists(cache):
    z = np.load(cache); CORPUS, HELDOUT = z["train"], z["heldout"]
else:
    CORPUS = np.array(encode("".join(lines[:cut])), dtype=np.int64)
    HELDOUT = np.array(encode("".join(lines[cut:])), dtype=np.int64)
    np.savez(cache + ".tmp.npz", train=CORPUS, heldout=HELDOUT); os.replace(cache + ".tmp.npz", cache)


# ------------------------------------------------------------------ rows: (ids, answer positions)
# An answer position t means: the loss is on predicting ids[t + 1] from ids[:t + 1].
def paper_row(rng, keys, n, nq, suffix=3):
    """The probe's format. suffix < 3 keeps only the first `suffix` tokens of "' is SP" after the
    queried key (format curriculum); then only the value is an answer."""
    ks = rng.choice(keys, n, replace=False); vs = VALUES[rng.choice(100, n, replace=False)]
    ids = [BOS] + HDR
    for k, v in zip(ks, vs): ids += [k, COL, v, NL]
    ans = []
    for q, j in enumerate(rng.permutation(n)[:nq]):
        if q: ids += [NL]
        if suffix == 3:
            ids += QPRE + [ks[j]] + QPOST
            ans += [len(ids) - 1, len(ids)]; ids += [SP, vs[j]]
        else:
            ids += QPRE + [ks[j]] + (QPOST + [SP])[:suffix]
            ans.append(len(ids) - 1); ids += [vs[j]]
    return ids, ans, set(vs.tolist())


def compact_row(rng, keys, n, nq):
    ks = rng.choice(keys, n, replace=False); vs = VALUES[rng.choice(100, n, replace=False)]
    ids = [BOS]
    for k, v in zip(ks, vs): ids += [k, v]
    ids += [SEP]; ans = []
    for j in rng.permutation(n)[:nq]:
        ids += [ks[j]]; ans.append(len(ids) - 1); ids += [vs[j]]
    return ids, ans, set(vs.tolist())


COPY_POOL_TRAIN = np.concatenate([KEYS_TRAIN, VALUES])
COPY_POOL_ALL = np.concatenate([ALL_WORDS, VALUES])


def copy_row(rng, keys, n, nq, pool=COPY_POOL_ALL):
    k = int(rng.integers(6, 20))
    span = list(rng.choice(pool, k))
    return [BOS] + span + [SEP] + span, list(range(k + 1, 2 * k + 1)), None


def offset_row(rng, keys, n, nq):
    ids, ans = [BOS], []
    for _ in range(n):
        k = int(rng.choice(keys)); v = int(VALUES[rng.integers(100)])
        ids += [k, COL, v]; ans.append(len(ids) - 1); ids += [k, NL]
    return ids, ans, None


def corpus_row(rng, length):
    s = int(rng.integers(0, len(CORPUS) - length - 1))
    ids = [BOS] + CORPUS[s:s + length].tolist()
    return ids, list(range(len(ids) - 1)), None


def make_batch(step, stage):
    rng = np.random.default_rng([a.seed, step])
    max_pairs, corpus_share, suffix = stages[stage]
    rows = []; total = 0
    cum = np.cumsum([a.copy, a.compact, a.offset])
    while len(rows) < a.batch:
        n = int(rng.integers(2, max_pairs + 1)); u = rng.random()
        if rng.random() < corpus_share: row = corpus_row(rng, 128)
        elif u < cum[0]:
            row = copy_row(rng, KEYS_TRAIN, n, n, COPY_POOL_ALL if stage >= a.heldout_copy_stage else COPY_POOL_TRAIN)
        elif u < cum[1]: row = compact_row(rng, KEYS_TRAIN, n, min(n, a.max_queries))
        elif u < cum[2]: row = offset_row(rng, KEYS_TRAIN, min(n, 8), n)
        else: row = paper_row(rng, KEYS_TRAIN, n, min(n, a.max_queries), suffix)
        T = max([len(r[0]) for r in rows] + [len(row[0])])
        if rows and T * (len(rows) + 1) > a.max_tokens: break
        rows.append(row)
    # Two length buckets (short copy/compact/offset rows, long probe-format rows), each padded to its
    # own longest row: right padding under a causal mask changes no real position, so this is the
    # same loss as one padded batch at about 40% fewer token-forwards.
    buckets = []
    for group in ([r for r in rows if len(r[0]) <= 64], [r for r in rows if len(r[0]) > 64]):
        if not group: continue
        T = max(len(r[0]) for r in group)
        X = torch.full((len(group), T), NL, dtype=torch.long)
        for i, (ids, _, _) in enumerate(group): X[i, :len(ids)] = torch.tensor(ids)
        r_idx = torch.tensor([i for i, (_, ans, _) in enumerate(group) for _ in ans])
        p_idx = torch.tensor([t for (_, ans, _) in group for t in ans])
        buckets.append((X, r_idx, p_idx))
    return buckets


# ------------------------------------------------------------------ model, optimizer, resume
torch.manual_seed(a.seed)
cfg = llama_config(V, a.d_model, a.layers, a.heads, a.kv_heads, a.ff, a.max_position, BOS, EOS, not a.untied)
model = LlamaLM(cfg)
emb = [prm for n, prm in model.named_parameters() if "embed_tokens" in n or "lm_head" in n]
dec = [prm for n, prm in model.named_parameters() if prm.dim() == 2 and not ("embed_tokens" in n or "lm_head" in n)]
nod = [prm for n, prm in model.named_parameters() if prm.dim() < 2]
opt = torch.optim.AdamW([{"params": dec, "weight_decay": a.weight_decay}, {"params": nod + emb, "weight_decay": 0.0}],
                        lr=a.lr, betas=(0.9, 0.95))
state = {"step": 0, "stage": 0, "best": -1.0, "seconds": 0.0}
ckpt_path = os.path.join(a.out, "ckpt.pt")
if a.init_from and not (a.resume and os.path.exists(ckpt_path)):
    ck = torch.load(a.init_from)
    model.load_state_dict(ck["model"]); opt.load_state_dict(ck["opt"])
    log(f"initialised from {a.init_from} (its step {ck['state']['step']})")
if a.resume and os.path.exists(ckpt_path):
    ck = torch.load(ckpt_path)
    model.load_state_dict(ck["model"]); opt.load_state_dict(ck["opt"]); state = ck["state"]
    log(f"resumed at step {state['step']} (stage {state['stage']})")
elif os.path.exists(ckpt_path):
    sys.exit(f"{ckpt_path} exists: pass --resume to continue it, or choose another --out")


def save_ckpt():
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "state": state, "args": vars(a)},
               ckpt_path + ".tmp")
    os.replace(ckpt_path + ".tmp", ckpt_path)


# ------------------------------------------------------------------ evaluation
@torch.no_grad()
def probe(keys, n, N, seed):
    """Paper-format probe, one query: (accuracy, rate of answering some listed value)."""
    rng = np.random.default_rng([seed, n])
    rows = [paper_row(rng, keys, n, 1) for _ in range(N)]
    X = torch.tensor([r[0] for r in rows])
    pos = torch.tensor([r[1][1] for r in rows])  # position predicting V (after SP)
    pos_sp = torch.tensor([r[1][0] for r in rows])
    ok = listed = 0
    for b in range(0, N, 25):
        sl = slice(b, b + 25)
        h = model.hidden(X[sl]); rr = torch.arange(h.shape[0])
        pv = model.logits(h[rr, pos[sl]]).argmax(-1); ps = model.logits(h[rr, pos_sp[sl]]).argmax(-1)
        gold = X[sl][rr, pos[sl] + 1]
        ok += int(((pv == gold) & (ps == SP)).sum())
        listed += sum(int(v) in rows[b + i][2] for i, v in enumerate(pv.tolist()))
    return ok / N, listed / N


@torch.no_grad()
def heldout_ppl(windows=16, length=256):
    nll = n = 0
    for w in range(windows):
        s = w * length
        if s + length + 1 > len(HELDOUT): break
        x = torch.tensor([BOS] + HELDOUT[s:s + length].tolist())[None]
        lg = model(x[:, :-1]); nll += float(F.cross_entropy(lg[0], x[0, 1:], reduction="sum")); n += length
    return math.exp(nll / max(n, 1))


def mean_cosine(ids):
    e = F.normalize(model.model.embed_tokens.weight[torch.as_tensor(ids)].detach(), dim=-1)
    c = e @ e.T; m = len(ids)
    return float((c.sum() - m) / (m * (m - 1)))


@torch.no_grad()
def row_accuracy(make_row, N=32, seed=14):
    """Accuracy over all answer positions of N rows of one kind (copy, compact, offset)."""
    rng = np.random.default_rng(seed)
    rows = [make_row(rng, KEYS_TRAIN, 8, 8) for _ in range(N)]
    T = max(len(r[0]) for r in rows); X = torch.full((N, T), NL, dtype=torch.long)
    for i, r in enumerate(rows): X[i, :len(r[0])] = torch.tensor(r[0])
    ri = torch.tensor([i for i, r in enumerate(rows) for _ in r[1]]); pi = torch.tensor([t for r in rows for t in r[1]])
    pred = model.logits(model.hidden(X)[ri, pi]).argmax(-1)
    return float((pred == X[ri, pi + 1]).float().mean())


def evaluate():
    model.eval(); out = {}
    out["copy"] = row_accuracy(copy_row); out["compact8"] = row_accuracy(compact_row); out["offset"] = row_accuracy(offset_row)
    suffix = stages[state["stage"]][2]
    if suffix < 3:  # the shortened-query rows of the current format stage, every answer of 8-pair rows
        out[f"suffix{suffix}"] = row_accuracy(lambda r, k, n, q: paper_row(r, k, n, q, suffix))
    N = a.eval_examples
    for n in (8, 20, 50):
        out[f"train{n}"], out[f"train{n}_listed"] = probe(KEYS_TRAIN, n, N, 11)
        out[f"eval{n}"], _ = probe(KEYS_EVAL, n, N, 12)
        out[f"other{n}"] = probe(KEYS_OTHER, n, N, 13)[0] if len(KEYS_OTHER) >= n else None
    out["ppl"] = heldout_ppl()
    out["cos_eval_keys"] = mean_cosine(KEYS_EVAL); out["cos_train_keys"] = mean_cosine(KEYS_TRAIN[:200])
    model.train(); return out


# ------------------------------------------------------------------ training
n_params = sum(prm.numel() for prm in model.parameters())
log(f"{n_params} parameters, vocab {V}; keys: {len(KEYS_TRAIN)} train, {len(KEYS_EVAL)} eval, "
    f"{len(KEYS_OTHER)} held-out other words; corpus {len(CORPUS)} tokens; stages {stages}")
metrics = open(os.path.join(a.out, "metrics.jsonl"), "a")
t0 = time.time() - state["seconds"]; ema = None; last_save = time.time()
t_start, start_step = time.time(), state["step"]
while state["step"] < a.steps:
    step = state["step"]
    for g in opt.param_groups: g["lr"] = a.lr * min(1.0, (step + 1) / a.warmup)
    buckets = make_batch(step, state["stage"])
    n_answers = sum(len(r) for _, r, _ in buckets)
    opt.zero_grad(set_to_none=True)
    loss = 0.0
    for X, r, pp in buckets:  # mean over every answer of the batch, accumulated bucket by bucket
        part = F.cross_entropy(model.logits(model.hidden(X)[r, pp]), X[r, pp + 1], reduction="sum") / n_answers
        part.backward(); loss += float(part)
    torch.nn.utils.clip_grad_norm_(model.parameters(), a.clip); opt.step()
    state["step"] = step + 1; state["seconds"] = time.time() - t0
    ema = loss if ema is None else 0.98 * ema + 0.02 * loss
    if state["step"] % 20 == 0:
        done = state["step"] / a.steps; rate = (state["step"] - start_step) / max(time.time() - t_start, 1e-9)
        eta = (a.steps - state["step"]) / max(rate, 1e-9)
        line = (f"step {state['step']}/{a.steps} ({100 * done:.1f}%) loss {ema:.3f} {rate:.2f} steps/s "
                f"ETA {eta / 3600:.1f} h")
        if sys.stdout.isatty(): print("\r" + line, end="", flush=True)
        elif state["step"] % 100 == 0: log(line)
    if state["step"] % a.eval_every == 0 or state["step"] == a.steps:
        ev = evaluate()
        rec = {"step": state["step"], "seconds": round(state["seconds"]), "stage": state["stage"],
               "max_pairs": stages[state["stage"]][0], "loss": round(ema, 4), **{k: (round(v, 4) if v is not None else None) for k, v in ev.items()}}
        metrics.write(json.dumps(rec) + "\n"); metrics.flush(); log(json.dumps(rec))
        score = min(ev["eval20"], ev["other20"] or 0) + 0.01 * min(ev["eval8"], ev["other8"] or 0)
        if score > state["best"]:
            state["best"] = score; state["best_step"] = state["step"]
            save_hf(model, os.path.join(a.out, "hf"), a.tokenizer)
        mp, _, suffix = stages[state["stage"]]
        gate = ev[f"suffix{suffix}"] if suffix < 3 else ev.get(f"train{mp if mp in (8, 20, 50) else 50}")
        # Advance only at multiples of --eval-every (not at a run's last step), so a run stopped and
        # resumed changes stage at exactly the steps an uninterrupted run does.
        if (state["step"] % a.eval_every == 0 and state["stage"] + 1 < len(stages)
                and (gate or 0) >= a.advance_at):
            state["stage"] += 1; log(f"curriculum: stage {state['stage']} {stages[state['stage']]}")
        save_ckpt()
    elif time.time() - last_save > 120:
        save_ckpt(); last_save = time.time()
log(f"done: {state['step']} steps in {state['seconds']:.0f} s; best held-out at step {state.get('best_step')}")
