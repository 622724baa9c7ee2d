#!/usr/bin/env python3
"""Writes the KV-retrieval examples of `radistill eval-tasks --task kv` as lm-eval JSONL.

Input: the probe files of `radistill export-data --probe-pairs P --probe-examples N --probe-seed S`
(probe_kvP_ids.npy: one row per example, BOS first, -1 padding; probe_kvP_answers.npy: 1 on the
answer tokens eval-tasks scores). Those are exactly eval-tasks' examples for `--pairs P --examples N
--seed S` (same generator, eval key pool). Each row becomes one JSON line:

  {"context": "Memorize the following dictionary:\\n...The value of the key 'lamb' is",
   "target": "42", "pairs": P, "index": i}

The context is the decoded text before the answer without its trailing space (lm-eval puts the
" " target delimiter back: the continuation it scores is " 42", as in the example's text).

Run with the lm-eval venv's python (it has numpy and tokenizers):
  build-lmeval-venv/bin/python scripts/lm_eval_tasks/make_kv_jsonl.py EXPORT_DIR TOKENIZER_DIR P OUT.jsonl
"""
import json
import os
import sys

import numpy as np
from tokenizers import Tokenizer


def main() -> int:
    if len(sys.argv) != 5:
        print(__doc__, file=sys.stderr)
        return 2
    export_dir, tok_dir, pairs, out_path = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    tok = Tokenizer.from_file(os.path.join(tok_dir, "tokenizer.json"))
    ids = np.load(os.path.join(export_dir, f"probe_kv{pairs}_ids.npy"))
    ans = np.load(os.path.join(export_dir, f"probe_kv{pairs}_answers.npy"))
    rows = []
    for i in range(ids.shape[0]):
        row = [int(t) for t in ids[i] if t >= 0]
        pos = [p for p in range(len(row)) if ans[i][p]]
        if not pos or pos != list(range(pos[0], pos[-1] + 1)):
            raise SystemExit(f"example {i}: expected one contiguous answer span, got positions {pos}")
        b, e = pos[0], pos[-1] + 1
        if e != len(row):
            raise SystemExit(f"example {i}: the answer is not the last span (kv has one query)")
        # Drop BOS (the server's tokenizer adds it; lm-eval's add_bos_token adds it for token prompts).
        context = tok.decode(row[1:b], skip_special_tokens=True)
        target = tok.decode(row[b:e], skip_special_tokens=True)
        if not context.endswith(" is ") or not target.isdigit():
            raise SystemExit(f"example {i}: unexpected text {context[-30:]!r} / {target!r}")
        rows.append({"context": context[:-1], "target": target, "pairs": pairs, "index": i})
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    with open(out_path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    print(f"make_kv_jsonl: wrote {len(rows)} examples ({pairs} pairs) to {out_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
