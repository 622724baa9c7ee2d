#!/usr/bin/env python3
"""Writes tests/fixtures/gguf/quant_blocks.gguf: random blocks of every quantised type radistill
dequantises (Q8_0, Q4_0, Q4_1, Q5_0, Q4_K, Q6_K), each next to its dequantisation by PyPI's `gguf`
package (tensor NAME.expected, F32), so the C++ test compares against an independent
implementation. Test-data generator only:  python3 tests/python/make_gguf_blocks.py
"""
import os

import numpy as np
import gguf
from gguf import GGMLQuantizationType as Q

OUT = os.path.join(os.path.dirname(__file__), "..", "fixtures", "gguf", "quant_blocks.gguf")
rng = np.random.default_rng(2024)
# type -> (values per block, bytes per block, byte offsets of its fp16 scales)
LAYOUT = {
    Q.Q8_0: (32, 34, [0]),
    Q.Q4_0: (32, 18, [0]),
    Q.Q4_1: (32, 20, [0, 2]),
    Q.Q5_0: (32, 22, [0]),
    Q.Q4_K: (256, 144, [0, 2]),
    Q.Q6_K: (256, 210, [208]),
}
w = gguf.GGUFWriter(OUT, "test")
for q, (n, nbytes, scales) in LAYOUT.items():
    blocks = 8
    raw = rng.integers(0, 256, size=(2, blocks // 2 * nbytes), dtype=np.uint8)
    flat = raw.reshape(blocks, nbytes)
    for off in scales:  # finite scales of either sign
        flat[:, off:off + 2] = (rng.standard_normal(blocks) * 0.05).astype(np.float16).view(np.uint8).reshape(blocks, 2)
    raw = flat.reshape(2, blocks // 2 * nbytes)
    expected = gguf.quants.dequantize(raw, q).astype(np.float32)  # [2, blocks / 2 * n]
    w.add_tensor(q.name, raw, raw_shape=raw.shape, raw_dtype=q)
    w.add_tensor(q.name + ".expected", expected)
w.write_header_to_file()
w.write_kv_data_to_file()
w.write_tensors_to_file()
w.close()
print(OUT)
