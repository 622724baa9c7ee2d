// Builds a hybrid student from a teacher (DESIGN sections 1.4 and 4): embeddings, norms, MLPs, LM
// head, o_proj and the kept heads' q/k/v rows are copied; SSM heads are initialised from their own
// attention weights ("attention") or randomly ("random").
//
// Attention init of SSM head h (KV group g = h / n_group, d = d_head, N = d_state <= d):
//   x_proj rows <- V rows of group g             (all d rows)
//   B_proj rows <- the first N K rows of group g
//   C_proj rows <- the first N Q rows of head h, scaled by 1/sqrt(d) so that C.B equals the teacher's
//                  pre-softmax score q.k/sqrt(d) (before RoPE) when N = d
//   When N < d, B and C keep the first N dims of the head's K and Q rows (truncation; SSM heads
//   have no RoPE, so no dim is special). N > d is refused for the attention init.
//   D = 0 (the attention head has no skip; the diagonal C_t.B_t x_t plays that role).
// Random init: x/B/C projections ~ N(0, 1/d_model), D = 1 (Mamba's default).
// Both inits: decay logits a_t = w_a.u_t + b_a with w_a = 0 and b_a chosen so that
//   -log alpha = softplus(b_a) is log-spaced over [1e-3, 1e-1] across the layer's SSM heads:
//   memory time constants of 10 to 1000 tokens, i.e. the heads start with long memory (as Mamba's
//   dt init); conv = identity (last tap 1); gate: z_proj weight 0, bias b* with silu(b*) = 1, so
//   the gate starts as the identity.
#pragma once

#include <cstdint>
#include <string>

#include "rad/model/causal_lm.h"
#include "rad/model/hybrid_config.h"

namespace rad {

enum class SsmInit { kAttention, kRandom };
SsmInit parse_ssm_init(const std::string& name);

// A new hybrid model for `config` with the teacher's weights copied and the SSM heads initialised.
// Requires teacher's config to equal config.base in sizes.
CausalLM convert_from_teacher(CausalLM& teacher, const HybridConfig& config, SsmInit init, uint64_t seed = 0);

}  // namespace rad
