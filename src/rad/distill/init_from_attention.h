// Builds a hybrid student from a teacher (docs/DESIGN.md sections 1.4 and 4): embeddings, norms, MLPs, LM
// head, o_proj and the kept heads' q/k/v rows are copied; SSM heads are initialised from their own
// attention weights ("attention") or randomly ("random").
//
// Attention init of SSM head h (KV group g = h / n_group, d = d_head, N = d_state <= d):
//   x_proj rows <- V rows of group g             (all d rows)
//   B_proj rows <- N of the K rows of group g  (the dims of ssm_state_dims)
//   C_proj rows <- the same N of the Q rows of head h, scaled by 1/sqrt(d): C.B is then the
//                  teacher's pre-softmax score q.k/sqrt(d) (before RoPE, when N = d).
//                  Without ssm.input_step, C is also scaled by 1 - alpha_h. Why: the recurrence
//                  H_t = alpha H_{t-1} + x_t B_t^T then has no input step (Mamba's dt), so with long
//                  memory (1 - alpha down to 1e-3) the state is a *sum* over up to ~1000 tokens and
//                  the head's output that many times the size of the softmax head's (a convex
//                  combination of values). Scaling by 1 - alpha makes the state an exponential moving
//                  average, the same size as one value. Measured on the default teacher with 46 of 48
//                  heads converted: step-0 alignment loss 46,601 without it, 566 with it, 722 for SSM
//                  heads that output zero (bench/RESULTS.md). Folded into C, that factor (3e-5..3e-3)
//                  is erased by the first optimizer steps; ssm.input_step applies it in the forward
//                  pass instead (hybrid_config.h), where training keeps it.
//   When N < d, B and C keep the N *lowest-frequency* rotary dims (ssm_state_dims). SSM heads have
//   no RoPE: an un-rotated q.k matches the rotated score best on the dims whose rotation angle
//   (position x frequency) stays small, i.e. the low frequencies; the high-frequency dims carry
//   relative position, which an un-rotated product scrambles. (HF rotate-half pairs dim i with
//   i + d/2 at frequency theta^(-2i/d), so the first rows are the *highest* frequencies.) Qwen2's
//   q/k/v biases come along. N > d is refused for the attention init.
//   D = 0 (the attention head has no skip; the diagonal C_t.B_t x_t plays that role).
// Random init: x/B/C projections ~ N(0, 1/d_model), D = 1 (Mamba's default).
// Both inits: decay logits a_t = w_a.u_t + b_a with w_a = 0 and b_a chosen so that
//   -log alpha = softplus(b_a) is head h's step dt_h, log-spaced over [dt_min, dt_max] across the
//   layer's n_head heads by head index (head_decay_steps). Indexed by head, not by SSM head, so a
//   head's init does not depend on which other heads the plan keeps: that is what lets a head bank
//   (distill/head_bank.h) serve every plan. The default [1e-3, 1e-1] spans time constants of 10 to
//   1000 tokens (Mamba's dt init); --dt-max 1 adds short-memory heads (Mamba's dt times A in [1, 16]
//   reaches about that), which measured no better here (bench/RESULTS.md, "Student parity");
//   conv = identity (last tap 1); gate: z_proj weight 0, bias b* with silu(b*) = 1, so the gate
//   starts as the identity.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "rad/model/causal_lm.h"
#include "rad/model/hybrid_config.h"

namespace rad {

enum class SsmInit { kAttention, kRandom };
SsmInit parse_ssm_init(const std::string& name);

// The N of a head's d rotary dims that B and C keep: the N/2 lowest-frequency rotate-half pairs
// (i, i + d/2) for i = d/2 - 1, d/2 - 2, ... (an odd N takes the next pair's first dim), ascending.
std::vector<int64_t> ssm_state_dims(int64_t d_head, int64_t d_state);

// The range of initial decay steps dt = -log(alpha) of the SSM heads.
struct DecayInit {
  double dt_min = 1e-3;
  double dt_max = 0.1;
  void validate() const;
};

// dt of each of a layer's n_head heads [n_head] (float64): log-spaced over the range by head index.
at::Tensor head_decay_steps(int64_t n_head, const DecayInit& decay);

// A new hybrid model for `config` with the teacher's weights copied and the SSM heads initialised.
// Requires teacher's config to equal config.base in sizes.
CausalLM convert_from_teacher(CausalLM& teacher, const HybridConfig& config, SsmInit init, uint64_t seed = 0,
                              const DecayInit& decay = {});

}  // namespace rad
