#!/usr/bin/env python3
"""scripts/gpu_check.py's comparisons (issue 28) on made-up data: equal inputs pass, inputs that
differ beyond the bound fail, and the safetensors writer/reader round-trips (F32 exactly, BF16 to
bf16 precision). Debian's python3 with numpy."""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "..", "..", "scripts", "gpu_check.py")
sys.path.insert(0, os.path.dirname(SCRIPT))
import gpu_check  # noqa: E402

failures = []
passed = 0


def check(cond, what):
    global passed
    if cond:
        passed += 1
    else:
        failures.append(what)
        print("FAIL:", what)


def run(*args):
    p = subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True)
    return p.returncode, json.loads(p.stdout.strip().splitlines()[-1])


with tempfile.TemporaryDirectory() as d:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((7, 50)).astype(np.float32)
    np.save(f"{d}/a.npy", a)
    np.save(f"{d}/same.npy", a + 1e-5)
    b = a.copy(); b[3, 7] += 2.0
    np.save(f"{d}/b.npy", b)
    rc, r = run("logits", f"{d}/a.npy", f"{d}/same.npy", "--max-abs", "1e-3")
    check(rc == 0 and r["ok"] and r["argmax_agreement"] == 1.0, "logits: equal within 1e-3 pass")
    rc, r = run("logits", f"{d}/a.npy", f"{d}/b.npy", "--max-abs", "1e-3")
    check(rc == 1 and not r["ok"] and abs(r["max_abs"] - 2.0) < 1e-5, "logits: a 2.0 difference fails")

    # safetensors round trip
    t = {"w": rng.standard_normal((3, 4)).astype(np.float32), "v": np.arange(5, dtype=np.float32)}
    gpu_check.write_safetensors(f"{d}/f32.safetensors", t, "f32")
    gpu_check.write_safetensors(f"{d}/bf16.safetensors", t, "bf16")
    f32 = gpu_check.read_safetensors(f"{d}/f32.safetensors")
    bf = gpu_check.read_safetensors(f"{d}/bf16.safetensors")
    check(all(np.array_equal(f32[k], t[k]) for k in t), "safetensors F32 round trip is exact")
    check(all(np.allclose(bf[k], t[k], rtol=1 / 128, atol=0) for k in t) and np.array_equal(bf["v"], t["v"]),
          "safetensors BF16 round trip within bf16 precision")

    # one distill step: metrics and weights after the step
    def step_dir(name, loss, grad, w):
        os.makedirs(f"{d}/{name}", exist_ok=True)
        with open(f"{d}/{name}/metrics.jsonl", "w") as f:
            f.write(json.dumps({"step": 1, "loss": loss, "kl": loss, "grad_norm": grad}) + "\n")
        gpu_check.write_safetensors(f"{d}/{name}/model.safetensors", {"w": w}, "f32")
    w0 = rng.standard_normal(1000).astype(np.float32)
    up = np.sign(rng.standard_normal(1000)).astype(np.float32) * 1e-3
    step_dir("init", 0, 0, w0)
    step_dir("ref", 2.5, 1.0, w0 - up)
    step_dir("got", 2.5 * (1 + 1e-6), 1.0, w0 - up)
    flipped = up.copy(); flipped[:200] *= -1
    step_dir("flip", 2.5, 1.0, w0 - flipped)
    step_dir("loss", 2.6, 1.0, w0 - up)
    common = ["--init-model", f"{d}/init", "--max-loss-rel", "1e-4", "--max-grad-rel", "1e-3"]
    rc, r = run("step", f"{d}/ref", f"{d}/got", "--ref-model", f"{d}/ref", "--got-model", f"{d}/got", *common)
    check(rc == 0 and r["update_sign_disagreement"] == 0.0, "step: the same step passes")
    rc, r = run("step", f"{d}/ref", f"{d}/flip", "--ref-model", f"{d}/ref", "--got-model", f"{d}/flip", *common)
    check(rc == 1 and abs(r["update_sign_disagreement"] - 0.2) < 1e-9, "step: 20% of updates flipped fails")
    rc, r = run("step", f"{d}/ref", f"{d}/loss", "--ref-model", f"{d}/ref", "--got-model", f"{d}/loss", *common)
    check(rc == 1 and r["loss_rel"] > 0.03, "step: a 4% loss difference fails")

    # head ranking
    def heads_json(name, order):
        heads = [{"layer": l, "head": h, "rank": i + 1} for i, (l, h) in enumerate(order)]
        with open(f"{d}/{name}.json", "w") as f:
            json.dump({"heads": heads, "teacher_accuracy": 0.8}, f)
    order = [(l, h) for l in range(4) for h in range(4)]
    heads_json("h_ref", order)
    heads_json("h_swap", order[:2][::-1] + order[2:])          # top two swapped: same top-3 set
    heads_json("h_new", [order[5]] + order[:5] + order[6:])     # another head enters the top 3
    rc, r = run("heads", f"{d}/h_ref.json", f"{d}/h_swap.json", "--top", "3")
    check(rc == 0 and r["top_same_set"] and r["spearman"] > 0.99, "heads: a swap inside the top 3 passes")
    rc, r = run("heads", f"{d}/h_ref.json", f"{d}/h_new.json", "--top", "3")
    check(rc == 1 and not r["top_same_set"], "heads: a new head in the top 3 fails")

    # throughput: the median after the first line, hours per billion tokens
    with open(f"{d}/m.jsonl", "w") as f:
        for i, tps in enumerate([10.0, 1000.0, 1000.0, 2000.0]):
            f.write(json.dumps({"step": 5 * (i + 1), "loss": 1.0, "tokens_per_s": tps}) + "\n")
        f.write('{"step": 25, "lo')  # cut by the time limit
    rc, r = run("throughput", f"{d}/m.jsonl", "--seconds", "10")
    check(rc == 0 and r["tokens_per_s"] == 1000.0 and abs(r["hours_per_billion_tokens"] - 1e6 / 3600) < 1e-6,
          "throughput: median tokens/s and hours per billion tokens")

print(f"{passed} passed, {len(failures)} failed")
sys.exit(1 if failures else 0)
