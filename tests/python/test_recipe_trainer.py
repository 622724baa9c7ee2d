#!/usr/bin/env python3
"""scripts/train_teacher_recipe.py: the same command and seed give the same weights, and a run
stopped part-way and resumed with --resume ends with exactly the weights of an uninterrupted run
(through a format-curriculum stage, suffix 1, and a stage change); a run started with --init-from
another run's checkpoint is deterministic too.
Tiny model, small corpus; Debian's python3-torch (installed by scripts/setup.sh). Run by ctest."""
import os, subprocess, sys, tempfile

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "scripts", "train_teacher_recipe.py")


def train(out, steps, corpus, resume=False, init=None):
    cmd = [sys.executable, SCRIPT, "--out", out, "--corpus", corpus, "--steps", str(steps), "--d-model", "16",
           "--layers", "1", "--heads", "2", "--kv-heads", "1", "--ff", "32", "--batch", "6", "--eval-every", "3",
           "--eval-examples", "4", "--seed", "5", "--stages", "4:0:1,6:0.5", "--advance-at", "0"]
    if resume: cmd.append("--resume")
    if init: cmd += ["--init-from", os.path.join(init, "ckpt.pt")]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def weights(out):
    return torch.load(os.path.join(out, "ckpt.pt"))["model"]


def main():
    with tempfile.TemporaryDirectory() as d:
        # A small corpus whose words include some of the key words (lower case, several times each).
        corpus = os.path.join(d, "corpus.txt")
        words = ["land", "fire", "water", "light", "voice", "house", "people", "city", "bread", "gold"]
        with open(corpus, "w") as f:
            for i in range(400):
                f.write(f"And the {words[i % 10]} of the {words[(i * 3) % 10]} was {words[(i * 7) % 10]} and good.\n")
        a, b, c = (os.path.join(d, x) for x in "abc")
        train(a, 7, corpus)
        train(b, 7, corpus)
        train(c, 4, corpus)
        train(c, 7, corpus, resume=True)
        e, f2 = os.path.join(d, "e"), os.path.join(d, "f")
        train(e, 3, corpus, init=a)
        train(f2, 3, corpus, init=a)
        wa, wb, wc = weights(a), weights(b), weights(c)
        same = all(torch.equal(wa[k], wb[k]) for k in wa)
        resumed = all(torch.equal(wa[k], wc[k]) for k in wa)
        we, wf = weights(e), weights(f2)
        init_same = all(torch.equal(we[k], wf[k]) for k in we) and not all(torch.equal(we[k], wa[k]) for k in we)
        state = torch.load(os.path.join(c, "ckpt.pt"))["state"]
        ok = same and resumed and init_same and state["step"] == 7 and state["stage"] == 1 and os.path.exists(os.path.join(c, "hf", "model.safetensors"))
        print(f"same seed same weights: {same}; resumed == uninterrupted: {resumed}; --init-from deterministic: "
              f"{init_same}; curriculum stage {state['stage']}")
        print("1 passed, 0 failed" if ok else "0 passed, 1 failed")
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
