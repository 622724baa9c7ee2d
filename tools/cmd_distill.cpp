#include <sstream>

#include "commands.h"
#include "rad/core/atomic_file.h"
#include "rad/core/device.h"
#include "rad/core/error.h"
#include "rad/core/log.h"
#include "rad/distill/distill.h"
#include "rad/io/checkpoint.h"
#include "rad/io/hybrid_checkpoint.h"
#include "rad/parallel/process_group.h"
#include "rad/train/token_shards.h"
#include "text_codec.h"
#include "training_flags.h"

namespace rad::cli {

void register_distill(CLI::App& app) {
  auto* cmd = app.add_subcommand("distill", "Distill a converted hybrid from its teacher (alignment, then logit KD)");
  // Default data: the corpus alone, as the paper distils on general text. Task rows (a flag) would
  // put the probe's own format into the students' training and flatter every retrieval number.
  static DistillOptions o = [] {
    DistillOptions d;
    d.mix.task_share = 0;
    return d;
  }();
  static std::string teacher_dir, student_dir, corpus_path, tasks_list = "mqar,kv", teacher_dtype = "auto";
  static double heldout = 0.02;
  static bool freeze_kept = false;
  cmd->add_option("--teacher", teacher_dir, "Teacher model directory")->required();
  cmd->add_option("--student", student_dir, "Hybrid directory from `radistill convert` (or an earlier distill/shrink)")->required();
  cmd->add_option("--corpus", corpus_path,
                  "UTF-8 text (the last --heldout-fraction of its lines is held out), or a token directory from "
                  "`radistill tokenize-corpus` (memory-mapped)")->required();
  cmd->add_option("--out", o.out_dir, "Output directory: distilled hybrid, metrics.jsonl, checkpoints/")->required();
  cmd->add_option("--align-steps", o.align.steps, "Hidden-state alignment steps (0 skips)")->capture_default_str();
  cmd->add_option("--align-lr", o.align.lr, "Alignment peak learning rate")->capture_default_str();
  cmd->add_option("--kd-steps", o.kd.steps, "Logit-distillation steps (0 skips)")->capture_default_str();
  cmd->add_option("--kd-lr", o.kd.lr, "KD peak learning rate")->capture_default_str();
  cmd->add_option("--ce-weight", o.ce_weight, "Weight of the data cross-entropy added to the KL")->capture_default_str();
  add_training_loop_flags(cmd, o, {"--batch", "--seq"});
  cmd->add_option("--weight-decay", o.weight_decay, "AdamW weight decay")->capture_default_str();
  add_training_loop_flags(cmd, o, {"--clip", "--bf16"});
  // Default "auto": a bf16 checkpoint stays bf16 and memory-mapped (half a float32 copy's memory)
  // while the teacher still computes in float32, so the losses are those of a float32 copy.
  cmd->add_option("--teacher-dtype", teacher_dtype,
                  "Dtype the frozen teacher's weights are held in: auto (as stored, memory-mapped, no copy), "
                  "float32 or bfloat16; it computes in float32 either way, converting one layer at a time")
      ->capture_default_str();
  cmd->add_option("--teacher-cache", o.teacher_cache,
                  "Directory of the teacher's final hidden states per KD batch, shared by distillations on the same "
                  "rows (read when there, written otherwise; float32; a run's students share runs/X/teacher_cache)");
  cmd->add_flag("--freeze-kept-heads", freeze_kept, "Keep the kept attention heads' q/k/v projections fixed");
  cmd->add_flag("--activation-checkpointing", o.activation_checkpointing,
                "Keep only each student layer's input for the backward pass and recompute the layer there "
                "(activation memory of one layer instead of all; about a third more student compute)");
  cmd->add_option("--seed", o.seed, "Data-order seed")->capture_default_str();
  cmd->add_option("--task-share", o.mix.task_share, "Fraction of sequences that are task sequences (training keys only; default 0: corpus only)")->capture_default_str();
  cmd->add_option("--tasks", tasks_list, "Comma-separated training tasks")->capture_default_str();
  add_training_loop_flags(cmd, o, {"--min-pairs", "--max-pairs", "--queries"});
  cmd->add_option("--answer-weight", o.mix.answer_weight, "CE weight of task answers (with --ce-weight)")->capture_default_str();
  static CLI::Option* heldout_opt =
      cmd->add_option("--heldout-fraction", heldout, "Fraction of corpus lines held out")->capture_default_str();
  add_training_loop_flags(cmd, o, {"--save-every", "--log-every", "--eval-every", "--probe-pairs", "--probe-examples",
                                   "--resume", "--stop-after"});
  cmd->callback([] {
    warn_if_bf16_is_slow(o);
    RAD_CHECK(io::is_hybrid_dir(student_dir), "{}: not a hybrid (config.json model_type is not radistill_hybrid); "
              "make one with `radistill convert`", student_dir);
    // Data-parallel when started with the torchrun environment (e.g. by `radistill launch`).
    parallel::run_data_parallel(o.group, [] {
      TextCodec codec = load_text_codec(teacher_dir);
      const at::ScalarType weights = io::resolve_weights_dtype(teacher_dtype, teacher_dir);
      CausalLM teacher = io::load_causal_lm(teacher_dir, weights);
      // Float32 activations whatever the weights' dtype (under --bf16, autocast still runs the
      // matmuls in bf16, as for a float32 teacher).
      teacher->set_compute_dtype(at::kFloat);
      log_info("teacher weights held in {}{}, computed in float32", io::dtype_name(weights),
               weights == io::stored_dtype(teacher_dir) ? " as stored (memory-mapped)" : " (converted on load)");
      io::HybridModel student = io::load_hybrid(student_dir, at::kFloat);
      to_compute_device(*teacher);
      to_compute_device(*student.model);
      o.mix.tasks = split_comma_list(tasks_list);
      o.align_trainable = align_trains;
      o.kd_trainable = [](const std::string& n) { return kd_trains(n, freeze_kept); };
      PretrainData data;
      data.corpus = load_corpus(corpus_path, teacher_dir, codec.encode, codec.tokenizer.vocab_size(), heldout,
                                heldout_opt->count() > 0);
      data.encode = codec.encode;
      data.bos = codec.bos;
      data.write_tokenizer = [](const std::string& out) { io::copy_tokenizer_files(teacher_dir, out); };
      HybridConfig config = student.config;
      distill(teacher, student.model, o, data,
              [config](CausalLM& m, const std::string& dir) { io::save_hybrid(m, config, dir); });
      log_info("wrote the distilled hybrid to {}", o.out_dir);
    });
  });
}

}  // namespace rad::cli
