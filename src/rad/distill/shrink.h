// d_state shrinking (docs/DESIGN.md section 5, step 4): a hybrid with a smaller SSM state, initialised
// from a distilled one, to be followed by a short re-distillation.
//
// Reduction rules, per SSM head (W_B, W_C: its [N, d] B and C projections, biases appended as an
// extra input column):
//   "svd" (default without conv): the head's output depends on B and C only through the bilinear
//     form C_t . B_s = u_t^T (W_C^T W_B) u_s. The rank-N' truncated SVD  W_C^T W_B ~ U S V^T is
//     its best rank-N' approximation (Frobenius), so W_C' = S^1/2 U^T and W_B' = S^1/2 V^T.
//     Shrinking to N' = N reproduces the model up to float rounding.
//   "truncate" (used whenever the depthwise conv is on, since the conv has per-channel weights that
//     a rotation of the state would scramble): keep the first N' state dimensions (and their conv
//     channels).
#pragma once

#include <string>

#include "rad/io/hybrid_checkpoint.h"

namespace rad {

io::HybridModel shrink_state(io::HybridModel& source, int64_t new_d_state, const std::string& rule);

}  // namespace rad
