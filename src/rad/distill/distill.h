// Distillation of a student (hybrid) from its teacher (docs/DESIGN.md section 5):
//   stage "align": hidden-state alignment. For every layer l, the teacher's residual stream h_l is
//     fed to student block l and sum_l mean_tokens ||block_l^S(h_l) - h_{l+1}||_2 is minimised.
//     Layers are independent given the teacher's residuals, so one teacher pass serves all.
//   stage "kd": end-to-end KL(p_teacher || p_student) on next-token distributions (temperature 1),
//     optionally plus cross-entropy on the data.
// Each stage has its own steps and learning rate (warm-up then WSD decay), AdamW (0.9, 0.95),
// clipping, optional bf16 autocast; atomic checkpoints and exact resume (batches are a function of
// seed, stage and step); a JSONL log with losses and periodic probe accuracy.
#pragma once

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "rad/model/causal_lm.h"
#include "rad/train/checkpoint.h"
#include "rad/train/data.h"
#include "rad/train/loop.h"

namespace rad {

struct DistillStage {
  int64_t steps = 0;  // 0 skips the stage
  double lr = 1e-3;
};

struct DistillOptions : TrainingLoopOptions {
  DistillOptions() { batch = 16; }
  DistillStage align{0, 1e-3};
  // What alignment matches: "layers" (each student block's output to the teacher's residual stream)
  // or "heads" (each SSM head's contribution through its slice of o_proj to the teacher head's:
  // the head bank's alignment, distill/head_bank.h).
  std::string align_target = "layers";
  DistillStage kd{0, 5e-4};
  double ce_weight = 0.0;  // kd: weight of the data cross-entropy added to the KL
  bool activation_checkpointing = false;  // recompute each student layer in backward (less memory)
  // KD reads the teacher's final hidden states of each batch from this directory when an earlier
  // distillation on the same rows left them there, and writes them there otherwise
  // (distill/teacher_cache.h). Empty: none. Float32 only (refused with bf16).
  std::string teacher_cache;
  double warmup_fraction = 0.05;
  double decay_fraction = 0.2;
  // Which student parameters each stage trains (null: all). Frozen ones get requires_grad(false).
  std::function<bool(const std::string&)> align_trainable;
  std::function<bool(const std::string&)> kd_trainable;
  // Snapshots of a long run: once the tokens trained (global steps x batch x seq) reach the next of
  // these counts (ascending), the student is written to OUT/snapshots/tokens-N (N: the tokens done
  // then) by `write_snapshot` (null: the model saver). A count passed before this run started (a
  // resumed run) is taken at the first step. Snapshots stay; checkpoints rotate.
  std::vector<int64_t> snapshot_tokens;
  std::function<void(CausalLM& student, const std::string& dir, int64_t tokens)> write_snapshot;
};

// The snapshot folders a run directory holds (OUT/snapshots/tokens-N), by token count ascending.
std::vector<std::pair<int64_t, std::string>> list_snapshots(const std::string& out_dir);

// The method's rule for what each stage trains (docs/DESIGN.md section 5), by HF-style parameter name:
//  - alignment trains the SSM heads only (`...self_attn.ssm.*`): the kept attention heads, o_proj,
//    MLPs and norms are the teacher's and already produce its residual stream;
//  - KD trains everything but the embeddings and the LM head; with `freeze_kept_heads` the kept
//    heads' q/k/v projections stay fixed too.
bool align_trains(const std::string& parameter_name);
bool kd_trains(const std::string& parameter_name, bool freeze_kept_heads);

// Trains `student` in place and writes it to options.out_dir with `save_model`.
void distill(CausalLM& teacher, CausalLM& student, const DistillOptions& options, const PretrainData& data,
             const ModelSaver& save_model);

// Sum over layers of the mean over tokens of ||student_block_l(h_l) - h_{l+1}||_2, given the
// teacher's residuals entering (in[l]) and leaving (out[l]) each layer. With `global_tokens` > 0,
// a data-parallel rank's share: the sums over its tokens divided by the global batch's token count.
at::Tensor hidden_alignment_loss(CausalLM& student, const std::vector<at::Tensor>& teacher_in,
                                 const std::vector<at::Tensor>& teacher_out, int64_t global_tokens = 0);

}  // namespace rad
