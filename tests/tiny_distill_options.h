// The distillation settings the unit tests share: a tiny batch, a few steps at a high rate, the
// fixture's self-attention weights as the aligned (trainable) part, evaluation on tiny probes.
#pragma once

#include <string>

#include "rad/distill/distill.h"

namespace rad::test {

inline DistillOptions tiny_distill_options(const std::string& out, int64_t steps_per_stage, int64_t save_every,
                                           int64_t eval_every) {
  DistillOptions o;
  o.out_dir = out;
  o.batch = 4;
  o.seq = 24;
  o.align = {steps_per_stage, 3e-3};
  o.kd = {steps_per_stage, 3e-3};
  o.ce_weight = 0.1;
  o.save_every = save_every;
  o.log_every = 1;
  o.eval_every = eval_every;
  o.probe_pairs = 1;
  o.probe_examples = 2;
  o.ppl_windows = 2;
  o.mix.task_share = 0.0;
  o.seed = 3;
  o.align_trainable = [](const std::string& n) { return n.find("self_attn") != std::string::npos; };
  return o;
}

}  // namespace rad::test
