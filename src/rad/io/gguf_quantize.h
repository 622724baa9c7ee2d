// Quantisation of float32 rows to ggml block types, the inverse of gguf_dequant.h for the types
// radistill writes (`radistill quantize`, `export-gguf --dtype q8_0|q4_0|...`). Block layouts as in
// gguf_dequant.h; for Q8_0, Q4_0 and Q5_0 the rounding rules are the format's reference ones, so a block written here
// dequantises to what llama.cpp's own quantiser would give from the same floats:
//
//   Q8_0: d = max|x| / 127, q = round(x / d)                        (q in -127..127)
//   Q4_0: m = the x of largest |x| (with its sign), d = m / -8,
//         q = min(15, floor(x / d + 8.5))                           (q in 0..15, x ~ d * (q - 8))
//   Q5_0: as Q4_0 with d = m / -16, q = min(31, floor(x / d + 16.5)) (q in 0..31, x ~ d * (q - 16))
//
// Q4_K and Q6_K are written by a simpler rule than llama.cpp's (whose scales come from an iterative
// search, make_qkx2_quants / make_qx_quants): the format is the same and llama.cpp reads the files,
// but the rounding error is somewhat larger than llama-quantize's from the same floats.
//   Q4_K: per 32 values, scale (max - min') / 15 and min -min' (min' = min(min, 0)); d and dmin the
//         largest of each / 63; 6-bit sc, m = round(scale / d), round(min / dmin) against the stored
//         half d, dmin; q = round((x + dmin * m) / (d * sc)) in 0..15.
//   Q6_K: per 16 values, scale = the x of largest |x| / -32; d = the scale of largest |scale| / -128;
//         int8 sc = round(scale / d); q = round(x / (d * sc)) in -32..31, stored + 32.
//
// No libtorch: the runtime's tests and the quantize command use it alike.
#pragma once

#include <cstdint>

#include "rad/io/gguf.h"

namespace rad::io {

// Whether quantize() writes `type`: Q8_0, Q4_0, Q5_0, Q4_K, Q6_K.
bool ggml_can_quantize(GgmlType type);

// Writes `n` values (whole blocks: 32 values, or 256 for Q4_K and Q6_K) from `src` as blocks of
// `type` at `dst` (n / block values * block_bytes bytes). Throws rad::Error for another type or a
// partial block.
void quantize(GgmlType type, const float* src, uint64_t n, uint8_t* dst);

}  // namespace rad::io
