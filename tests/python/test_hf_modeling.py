#!/usr/bin/env python3
"""python/modeling_radistill.py (the transformers modeling file radistill writes into every hybrid
directory, issue 31) against the C++ runtime.

For tiny teachers (the golden fixtures in tests/fixtures/models: GQA, MHA + tied embeddings, Qwen2
biases, Mistral head_dim + sliding window, llama3 / linear RoPE scaling, bf16 weights; and the
shipped default teacher, with its tokenizer) and head plans that keep some heads, all heads or no
head of a layer, with the SSM options (conv, gate, bias, input_step, d_state, chunk size) on and off:

1. `radistill convert` writes modeling_radistill.py (identical to python/modeling_radistill.py)
   and an auto_map in config.json;
2. every weight is perturbed (seeded noise, so that identity inits and D = 0 do not hide a term);
3. `AutoModelForCausalLM.from_pretrained(dir, trust_remote_code=True)` loads the directory with no
   missing or unexpected weight;
4. its float32 logits equal `radistill forward --dump-logits` within 1e-4 (max abs);
5. its cached forward (prefill, then token by token) equals its full forward;
6. greedy `generate()` equals `radistill generate` (the runtime engine, and once the libtorch
   engine) token for token, and for the default teacher as decoded text (`--text`);
7. left-padded batched `generate()` equals unbatched.

Runs in the venv of scripts/setup_python.sh (pinned transformers over Debian's python3-torch):
ctest starts it with /usr/bin/python3 and --python VENV_PYTHON; it re-executes itself there, and
fails with a message when that venv is missing.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "models")
TOLERANCE = 1e-4

# (name, teacher, kept heads, convert flags, prompt length); the fixtures have 2 layers x 4 heads.
CASES = [
    # GQA 4/2: layer 0 keeps one head of each KV group, layer 1 keeps none; every SSM option on.
    ("gqa_all_options", "llama_gqa", [[0, 0], [0, 3]],
     ["--conv", "--gate", "--bias", "--input-step", "--chunk-size", "8"], 21),
    # Layer 0 keeps every head (exactly the teacher's layer), layer 1 one head; every option off.
    ("gqa_full_layer_plain", "llama_gqa", [[0, 0], [0, 1], [0, 2], [0, 3], [1, 1]],
     ["--no-conv", "--no-gate", "--no-bias", "--no-input-step"], 17),
    # Mistral, head_dim 16 != hidden / heads, sliding window 5; two kept heads share one KV group;
    # d_state 8 < d_head; conv width 3, gate, input step; chunks of 4.
    ("mistral_window", "mistral_headdim", [[0, 0], [0, 1], [1, 2]],
     ["--d-state", "8", "--conv", "--conv-width", "3", "--gate", "--input-step", "--chunk-size", "4"], 19),
    # Qwen2: q/k/v biases, tied embeddings; d_state 4, conv, no input step.
    ("qwen2_bias_tied", "qwen2_bias", [[0, 1], [0, 2]], ["--d-state", "4", "--conv", "--chunk-size", "5"], 15),
    # llama3 RoPE scaling, attention (o_proj) and MLP biases, eos as a list; layer 1 keeps all heads.
    ("llama3_rope_bias", "llama3_rope", [[0, 2], [1, 0], [1, 1], [1, 2], [1, 3]], ["--gate", "--bias"], 16),
    # MHA + tied embeddings, a pure SSM (no kept head); conv width 1.
    ("mha_pure_ssm", "llama_tied_mha", [], ["--conv", "--conv-width", "1", "--input-step"], 14),
    # Linear RoPE scaling.
    ("linear_rope", "llama_linear_rope", [[1, 3]], ["--conv", "--gate"], 13),
    # bf16 weights on disk (loaded as float32 on both sides).
    ("bf16_weights", "llama_bf16", [[0, 1], [1, 2]], ["--input-step", "--gate"], 12),
]
# The shipped default teacher (6 layers x 8 heads, 4 KV groups, tied, with a tokenizer): text.
TEXT_PLAN = [[0, 0], [0, 1], [2, 5]] + [[3, h] for h in range(8)]
TEXT_FLAGS = ["--d-state", "8", "--conv", "--gate", "--input-step", "--chunk-size", "16"]
TEXT_PROMPTS = ["And God said, Let there be", "In the beginning"]
NEW_TOKENS = 10


class Checks:
    def __init__(self):
        self.passed = 0
        self.failed = []

    def check(self, ok, what):
        if ok:
            self.passed += 1
        else:
            self.failed.append(what)
            print(f"FAIL: {what}", flush=True)


def reexec_in_venv(python):
    if os.environ.get("RAD_HF_TEST_IN_VENV") == "1":
        return
    if not os.path.exists(python):
        print(f"FAIL: the transformers venv is missing ({python}); create it with: bash scripts/setup_python.sh",
              flush=True)
        print("0 passed, 1 failed")
        sys.exit(1)
    env = dict(os.environ, RAD_HF_TEST_IN_VENV="1")
    os.execve(python, [python, os.path.abspath(__file__)] + sys.argv[1:], env)


def run(cmd, **kw):
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    return r.stdout


def perturb(model_dir, seed, scale):
    """Seeded noise on every tensor of model.safetensors (kept in its dtype)."""
    import torch
    from safetensors.torch import load_file, save_file
    path = os.path.join(model_dir, "model.safetensors")
    tensors = load_file(path)
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name in sorted(tensors):
        t = tensors[name]
        noise = torch.randn(t.shape, generator=g) * scale
        if name.endswith("ssm.D"):
            noise = noise * 5  # D is 0 after the attention init
        if name.endswith("a_proj.bias"):
            noise = noise * 5  # spread the decays
        out[name] = (t.float() + noise).to(t.dtype).contiguous()
    save_file(out, path, metadata={"format": "pt"})


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--python", required=True, help="python of the venv of scripts/setup_python.sh")
    ap.add_argument("--radistill", required=True, help="the radistill binary")
    ap.add_argument("--keep", help="keep the work directory here (for debugging)")
    args = ap.parse_args()
    reexec_in_venv(args.python)

    work = args.keep or tempfile.mkdtemp(prefix="rad_hf_")
    os.makedirs(work, exist_ok=True)
    # Nothing from a hub; transformers' module cache for remote code inside the work directory.
    os.environ.update(HF_HOME=os.path.join(work, "hf_home"), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
                      TOKENIZERS_PARALLELISM="false")
    import numpy as np
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig
    transformers.logging.set_verbosity_error()
    torch.set_num_threads(1)
    print(f"transformers {transformers.__version__}, torch {torch.__version__}", flush=True)

    rad = [os.path.abspath(args.radistill), "--threads", "1"]
    with open(os.path.join(ROOT, "python", "modeling_radistill.py")) as f:
        modeling_source = f.read()
    checks = Checks()
    worst = 0.0
    t_start = time.time()

    def convert(name, teacher, kept, flags, seed, scale):
        plan = os.path.join(work, name + ".plan.json")
        with open(plan, "w") as f:
            json.dump({"kept_heads": kept}, f)
        out = os.path.join(work, name)
        shutil.rmtree(out, ignore_errors=True)
        run(rad + ["convert", teacher, "--plan", plan, "--out", out] + flags)
        with open(os.path.join(out, "modeling_radistill.py")) as f:
            checks.check(f.read() == modeling_source, f"{name}: modeling_radistill.py differs from python/")
        with open(os.path.join(out, "config.json")) as f:
            config = json.load(f)
        checks.check(config.get("auto_map", {}).get("AutoModelForCausalLM") ==
                     "modeling_radistill.RadistillHybridForCausalLM", f"{name}: config.json has no auto_map")
        perturb(out, seed, scale)
        model, info = AutoModelForCausalLM.from_pretrained(out, trust_remote_code=True, torch_dtype=torch.float32,
                                                           output_loading_info=True)
        checks.check(type(model).__name__ == "RadistillHybridForCausalLM", f"{name}: loaded {type(model).__name__}")
        checks.check(not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"],
                     f"{name}: loading info {info}")
        return out, config, model.eval()

    def greedy_config(pad):
        # No EOS: both sides generate exactly NEW_TOKENS (radistill with --ignore-eos).
        return GenerationConfig(do_sample=False, max_new_tokens=NEW_TOKENS, pad_token_id=pad, eos_token_id=None)

    for i, (name, teacher, kept, flags, length) in enumerate(CASES):
        t0 = time.time()
        out, config, model = convert(name, os.path.join(FIXTURES, teacher), kept, flags, seed=100 + i, scale=0.1)
        vocab = config["vocab_size"]
        g = torch.Generator().manual_seed(7 + i)
        ids = [1] + torch.randint(3, vocab, (length - 1,), generator=g).tolist()
        ids_text = ",".join(map(str, ids))

        # (a) logits against `radistill forward` (libtorch model, float32).
        npy = os.path.join(work, name + ".logits.npy")
        run(rad + ["forward", out, "--token-ids", ids_text, "--dump-logits", npy])
        ref = torch.from_numpy(np.load(npy))
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0]
        diff = (logits - ref).abs().max().item()
        worst = max(worst, diff)
        checks.check(logits.shape == ref.shape and diff <= TOLERANCE,
                     f"{name}: logits differ from radistill forward by {diff:.3g} (> {TOLERANCE})")

        # The cache: prefill half, then one token at a time, equals the full forward.
        with torch.no_grad():
            half = length // 2
            o = model(torch.tensor([ids[:half]]), use_cache=True)
            parts, cache = [o.logits[0]], o.past_key_values
            for t in range(half, length):
                o = model(torch.tensor([[ids[t]]]), past_key_values=cache, use_cache=True)
                parts.append(o.logits[0])
                cache = o.past_key_values
        inc = (torch.cat(parts) - logits).abs().max().item()
        checks.check(inc <= TOLERANCE, f"{name}: cached forward differs from the full forward by {inc:.3g}")

        # (b) greedy generation against `radistill generate` (the runtime engine; once libtorch's).
        with torch.no_grad():
            hf = model.generate(torch.tensor([ids]), generation_config=greedy_config(0))[0, length:].tolist()
        engines = ["runtime", "torch"] if i == 0 else ["runtime"]
        for engine in engines:
            text = run(rad + ["generate", out, "--token-ids", ids_text, "--max-new-tokens", str(NEW_TOKENS),
                              "--ignore-eos", "--engine", engine])
            cpp = json.loads(text.strip().splitlines()[-1])
            checks.check(hf == cpp, f"{name}: generate() {hf} != radistill generate --engine {engine} {cpp}")

        # Left-padded batch (the shorter prompt padded) equals each prompt alone.
        if i in (0, 2):
            short = ids[: length - 5]
            batch = torch.tensor([ids, [0] * 5 + short])
            mask = torch.ones_like(batch)
            mask[1, :5] = 0
            with torch.no_grad():
                both = model.generate(batch, attention_mask=mask, generation_config=greedy_config(0))[:, length:]
                alone = model.generate(torch.tensor([short]), generation_config=greedy_config(0))[0, len(short):]
            checks.check(both[0].tolist() == hf and both[1].tolist() == alone.tolist(),
                         f"{name}: left-padded batch generate {both.tolist()} != unbatched {[hf, alone.tolist()]}")
        print(f"{name}: max |logit diff| {diff:.2e}, cached {inc:.2e}, {time.time() - t0:.1f} s", flush=True)

    # The default teacher with its tokenizer: greedy text.
    t0 = time.time()
    out, config, model = convert("default_teacher_text", os.path.join(ROOT, "models", "default-teacher"), TEXT_PLAN,
                                 TEXT_FLAGS, seed=1, scale=0.02)
    tok = AutoTokenizer.from_pretrained(out)
    for prompt in TEXT_PROMPTS:
        ids = tok(prompt)["input_ids"]
        cpp_ids = json.loads(run(rad + ["tokenize", out, "--text", prompt, "--add-special-tokens"]).strip())
        checks.check(ids == cpp_ids, f"text: tokenizer ids {ids} != radistill tokenize {cpp_ids}")
        npy = os.path.join(work, "text.logits.npy")
        run(rad + ["forward", out, "--token-ids", ",".join(map(str, ids)), "--dump-logits", npy])
        with torch.no_grad():
            diff = (model(torch.tensor([ids])).logits[0] - torch.from_numpy(np.load(npy))).abs().max().item()
        worst = max(worst, diff)
        checks.check(diff <= TOLERANCE, f"text {prompt!r}: logits differ by {diff:.3g}")
        with torch.no_grad():
            new = model.generate(torch.tensor([ids]), generation_config=greedy_config(tok.eos_token_id))[0, len(ids):]
        # As `radistill generate --text` prints it: prompt + continuation decoded, less the prompt.
        prompt_text = tok.decode(ids, skip_special_tokens=True)
        full = tok.decode(ids + new.tolist(), skip_special_tokens=True)
        hf_text = full[len(prompt_text):] if full.startswith(prompt_text) else tok.decode(new, skip_special_tokens=True)
        cpp_text = run(rad + ["generate", out, "--text", prompt, "--max-new-tokens", str(NEW_TOKENS), "--ignore-eos"])
        cpp_text = cpp_text[:-1] if cpp_text.endswith("\n") else cpp_text
        checks.check(hf_text == cpp_text, f"text {prompt!r}: generate() {hf_text!r} != radistill {cpp_text!r}")
        print(f"text {prompt!r} -> {hf_text!r}: max |logit diff| {diff:.2e}", flush=True)
    print(f"default teacher text: {time.time() - t0:.1f} s", flush=True)

    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    print(f"max |logit diff| over all cases: {worst:.3g} (tolerance {TOLERANCE}); {time.time() - t_start:.1f} s")
    print(f"{checks.passed} passed, {len(checks.failed)} failed")
    return 1 if checks.failed else 0


if __name__ == "__main__":
    sys.exit(main())
