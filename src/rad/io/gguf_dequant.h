// Dequantisation of ggml tensor data to float32, written from the block layouts of the format
// (ggml-common.h): each quantised type stores blocks of `block_elems` values in `block_bytes`
// bytes (rad/io/gguf.h, ggml_type_info), little-endian, with fp16 scales.
//
//   Q8_0  (32 values, 34 bytes): fp16 d, int8 q[32];                      x = d * q
//   Q4_0  (32, 18): fp16 d, 16 bytes of nibbles;                          x = d * (q - 8)
//   Q4_1  (32, 20): fp16 d, fp16 m, 16 bytes of nibbles;                  x = d * q + m
//         (byte j holds value j in its low nibble and value j + 16 in its high nibble)
//   Q5_0  (32, 22): fp16 d, uint32 qh (bit j: the fifth bit of value j), 16 bytes of nibbles as Q4_0;
//         x = d * (q - 16)
//   Q4_K  (256, 144): fp16 d, fp16 dmin, 12 bytes of 6-bit scales and mins for 8 sub-blocks of 32,
//         128 bytes of nibbles; x = d * sc[s] * q - dmin * mn[s]. Each run of 32 bytes holds
//         sub-block 2i in its low nibbles and sub-block 2i + 1 in its high nibbles.
//   Q6_K  (256, 210): 128 bytes low 4 bits, 64 bytes high 2 bits, int8 scales[16] (one per 16
//         values), fp16 d; x = d * scale * (q - 32).
#pragma once

#include <cstdint>

#include "rad/io/gguf.h"

namespace rad::io {

// Whether dequantize() handles `type`: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q4_K, Q6_K.
bool ggml_can_dequantize(GgmlType type);

// Converts `n` values (a multiple of the type's block size) stored at `src` to float32 at `dst`.
// Throws rad::Error for a type we do not handle or a count that is not a whole number of blocks.
void dequantize(GgmlType type, const uint8_t* src, uint64_t n, float* dst);

}  // namespace rad::io
