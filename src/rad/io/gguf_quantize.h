// Quantisation of float32 rows to ggml block types, the inverse of gguf_dequant.h for the types
// radistill writes (`radistill quantize`, `export-gguf --dtype q8_0|q4_0`). Block layouts as in
// gguf_dequant.h; the rounding rules are the format's reference ones, so a block written here
// dequantises to what llama.cpp's own quantiser would give from the same floats:
//
//   Q8_0: d = max|x| / 127, q = round(x / d)                        (q in -127..127)
//   Q4_0: m = the x of largest |x| (with its sign), d = m / -8,
//         q = min(15, floor(x / d + 8.5))                           (q in 0..15, x ~ d * (q - 8))
//
// No libtorch: the runtime's tests and the quantize command use it alike.
#pragma once

#include <cstdint>

#include "rad/io/gguf.h"

namespace rad::io {

// Whether quantize() writes `type`: Q8_0 and Q4_0.
bool ggml_can_quantize(GgmlType type);

// Writes `n` values (a multiple of 32) from `src` as blocks of `type` at `dst`
// (n / 32 * block_bytes bytes). Throws rad::Error for another type or a partial block.
void quantize(GgmlType type, const float* src, uint64_t n, uint8_t* dst);

}  // namespace rad::io
