#!/usr/bin/env python3
"""Peak resident memory per stage from README's "Memory per stage" formula, for the 135M shape
that bench/peak_rss.sh measures and for Llama-3.2-1B and Llama-3.1-8B (issue 16).

    python3 bench/memory_formula.py [--batch 4] [--seq 256] [--teacher-bytes 2]

Terms (bytes): B0 the process; b P the teacher as held; 4 P_s the float32 student; 12 bytes per
trained parameter (gradient + AdamW's two moments); 8 N L d the teacher's residual streams that
alignment matches; 4 N L a the student's saved activations (4 N (L d + a) with activation
checkpointing); KL_TENSORS x 4 N V the KL's float32 N x V tensors in KD. A and KL_TENSORS are
fitted to the 135M measurements (bench/RESULTS.md, "Peak RSS per stage, with the fused training
kernels"); everything else is counted.
"""
import argparse

GIB = 2**30
MIB = 2**20
B0 = 175 * MIB          # measured: `radistill env` peak RSS
KL_TENSORS = 5          # N x V float32 tensors alive at the KL's peak (fitted)


def activations_per_token_layer(d, f):
    """a: float32 values kept per token per student layer for the backward (fitted: d + 8f)."""
    return d + 8 * f


MODELS = {
    # name: P, P_s, P_emb, P_ssm, L, d, f, V (P_s and P_ssm: the hybrid at d_state = d_head)
    "SmolLM2-135M shape": (134.5e6, 147.8e6, 49152 * 576, 29.6e6, 30, 576, 1536, 49152),
    "Llama-3.2-1B (tied, V 128256)": (1.24e9, 1.34e9, 128256 * 2048, 0.20e9, 16, 2048, 8192, 128256),
    "Llama-3.1-8B (untied)": (8.03e9, 8.84e9, 2 * 128256 * 4096, 1.6e9, 32, 4096, 14336, 128256),
}


def stages(P, P_s, P_emb, P_ssm, L, d, f, V, N, b):
    a = activations_per_token_layer(d, f)
    kl = KL_TENSORS * 4 * N * V
    kd_base = B0 + b * P + 4 * P_s + 12 * (P_s - P_emb) + kl
    return {
        "heads": B0 + b * P,
        "convert": B0 + 4 * P + 4 * P_s,
        "align": B0 + b * P + 4 * P_s + 12 * P_ssm + 8 * N * L * d + 4 * N * L * a,
        "kd": kd_base + 4 * N * L * a,
        "kd, checkpointing": kd_base + 4 * N * (L * d + a),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--teacher-bytes", type=int, default=2, help="2: bf16 as stored, 4: float32 copy")
    args = ap.parse_args()
    N = args.batch * args.seq
    names = ["heads", "convert", "align", "kd", "kd, checkpointing"]
    print(f"N = {N} tokens per process, teacher held at {args.teacher_bytes} bytes per weight")
    print("| model | " + " | ".join(names) + " |")
    print("|---|" + "---:|" * len(names))
    for model, shape in MODELS.items():
        s = stages(*shape, N=N, b=args.teacher_bytes)
        unit, div = ("MiB", MIB) if shape[0] < 1e9 else ("GiB", GIB)
        cells = [f"{s[n] / div:,.0f} {unit}" if unit == "MiB" else f"{s[n] / div:.1f} {unit}" for n in names]
        print(f"| {model} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
