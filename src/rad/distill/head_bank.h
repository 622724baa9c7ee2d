// The head bank (docs/DESIGN.md section 5, "Head bank"): every attention head of the teacher gets a recurrent
// replacement, aligned once and independently of any plan, so that any plan can be assembled from
// it (kept heads from the teacher, every other head from the bank) and only needs a short KD.
//
// A bank is stored as a pure-SSM hybrid directory (every head an SSM head, converted with the
// per-head attention init of distill/init_from_attention.h) plus bank.json (per-head residuals).
// Its alignment is per head: with the teacher's own mixer input u_l = norm_l(h_l) fed to the bank's
// SSM heads of layer l, head h minimises the mean over tokens of ||W_o[:, h] (y_h - z_h)||_2, where
// z_h is the teacher head's output and W_o[:, h] its slice of o_proj: the head's contribution to the
// residual stream. The terms share no parameters, so one optimizer over all heads trains each head
// as if alone (AdamW is per element; only the global gradient clipping couples them), and one
// teacher forward per batch serves all heads.
#pragma once

#include <ATen/ATen.h>

#include <vector>

#include "rad/model/causal_lm.h"
#include "rad/model/hybrid_config.h"

namespace rad {

// The teacher's per-layer mixer inputs' source (the residual entering each layer) and per-head
// outputs z [B, T, n_head, d_head] for one batch, without gradients.
struct TeacherHeadOutputs {
  std::vector<at::Tensor> residual_in;  // [B, T, d_model] per layer
  std::vector<at::Tensor> heads;        // [B, T, n_head, d_head] per layer, float32
};
TeacherHeadOutputs capture_teacher_heads(CausalLM& teacher, const at::Tensor& input_ids);

// Per-head error sums of one batch, [n_layer, n_head] float32 (zeros for kept heads): the summed
// norms of each head's contribution error and of its target contribution (their ratio, accumulated
// over batches, is the head's relative residual).
struct HeadErrorSums {
  at::Tensor error, target;
  int64_t tokens = 0;
};

// Sum over layers and SSM heads of the mean over tokens of ||W_o[:, h] (y_h - z_h)||_2 (see the
// header). With `global_tokens` > 0, a data-parallel rank's share (sums over its tokens divided by
// the global batch's token count). `sums` (optional) receives the per-head sums of this batch.
at::Tensor head_alignment_loss(CausalLM& student, const TeacherHeadOutputs& teacher, int64_t global_tokens = 0,
                               HeadErrorSums* sums = nullptr);

// Each head's relative residual ||W_o[:, h] (y_h - z_h)|| / ||W_o[:, h] z_h|| (token-summed norms,
// over all `windows` [T] of held-out token ids, `batch` at a time): [n_layer, n_head] float64 (0
// for kept heads). How much of a head's contribution its recurrent replacement misses: a direct
// signal, beside the ablation score, of which heads a recurrence cannot replace.
at::Tensor head_residuals(CausalLM& teacher, CausalLM& student, const std::vector<at::Tensor>& windows,
                          int64_t batch);

// Checks that `bank` can serve `teacher`: a hybrid of the same sizes that keeps no head.
void check_bank_matches(const HybridConfig& bank, const ModelConfig& teacher, const std::string& where);

// When BANK/bank.json exists, checks that it was built from the teacher whose weights hash to
// `teacher_hash` (rad/heads/model_hash.h), naming both hashes otherwise.
void check_bank_teacher(const std::string& bank_dir, const std::string& teacher_hash);

// Copies every SSM head of `hybrid` (a plan's hybrid, converted from the same teacher with the
// bank's SSM options) from the bank's replacement of the same (layer, head). Kept heads, o_proj,
// norms, MLPs and embeddings stay as converted (the teacher's).
void assemble_from_bank(CausalLM& hybrid, CausalLM& bank);

// The hybrid for `plan` assembled from `teacher` (float32) and `bank` in memory: `convert --bank`.
CausalLM assemble_plan(CausalLM& teacher, CausalLM& bank, const HybridConfig& bank_config, const HeadPlan& plan);

}  // namespace rad
