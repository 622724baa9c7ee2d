// IEEE half (f16) and bfloat16 <-> float32, scalar and portable: the one definition the GGUF
// dequantiser, the runtime's kernels and their tests use. (The runtime's AVX2 paths convert whole
// rows with F16C instructions, which give the same bits.)
#pragma once

#include <cstdint>

namespace rad {

float bf16_to_f32(uint16_t v);  // exact
float f16_to_f32(uint16_t h);   // exact, subnormals, inf and NaN included
// float -> IEEE half, round to nearest even (overflow to inf, NaN kept NaN with its top payload
// bits, as the hardware does); exact for every value f16 represents.
uint16_t f32_to_f16(float f);

}  // namespace rad
