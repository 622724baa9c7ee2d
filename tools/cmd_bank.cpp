// `radistill bank`: the head bank (rad/distill/head_bank.h). Converts the teacher with every head an
// SSM head, aligns each head's replacement to that head's own contribution (one teacher pass per
// batch for all heads; only the SSM heads train), writes the bank as a hybrid directory and
// bank.json with each head's relative residual on held-out text. Resumable like `distill`, and
// data-parallel under `radistill launch`.
#include <filesystem>

#include "commands.h"
#include "rad/core/atomic_file.h"
#include "rad/core/device.h"
#include "rad/core/error.h"
#include "rad/core/log.h"
#include "rad/distill/distill.h"
#include "rad/distill/head_bank.h"
#include "rad/heads/model_hash.h"
#include "rad/io/checkpoint.h"
#include "rad/io/hybrid_checkpoint.h"
#include "rad/parallel/process_group.h"
#include "rad/train/token_shards.h"
#include "ssm_flags.h"
#include "text_codec.h"
#include "training_flags.h"

namespace rad::cli {
namespace fs = std::filesystem;

void register_bank(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "bank", "Head bank: align a recurrent replacement for every attention head of a teacher, once, for every plan "
              "(`convert --bank` assembles any plan from it)");
  static DistillOptions o = [] {
    DistillOptions d;
    d.mix.task_share = 0;
    d.align = {300, 1e-3};
    d.align_target = "heads";
    d.batch = 8;
    d.seq = 256;
    d.eval_every = 0;  // none: a bank alone is a pure SSM, its probe accuracy says nothing
    return d;
  }();
  static SsmOptions ssm = recommended_ssm_options();
  static DecayInit decay;
  static std::string teacher_dir, corpus_path, tasks_list = "mqar,kv";
  static double heldout = 0.02;
  static int64_t residual_windows = 32;
  cmd->add_option("TEACHER", teacher_dir, "Teacher model directory (Hugging Face format)")->required();
  cmd->add_option("--corpus", corpus_path, "UTF-8 text (its last --heldout-fraction of lines held out) or a token "
                  "directory from `radistill tokenize-corpus`")->required();
  cmd->add_option("--out", o.out_dir, "Bank directory (a pure-SSM hybrid + bank.json); --resume continues it")->required();
  cmd->add_option("--steps", o.align.steps, "Alignment steps")->capture_default_str();
  cmd->add_option("--lr", o.align.lr, "Peak learning rate")->capture_default_str();
  add_training_loop_flags(cmd, o, {"--batch", "--seq", "--clip"});
  add_ssm_flags(cmd, ssm, decay);
  cmd->add_option("--seed", o.seed, "Data-order seed")->capture_default_str();
  cmd->add_option("--task-share", o.mix.task_share, "Fraction of sequences that are task sequences (training keys only)")
      ->capture_default_str();
  cmd->add_option("--tasks", tasks_list, "Comma-separated training tasks")->capture_default_str();
  cmd->add_option("--heldout-fraction", heldout, "Fraction of corpus lines held out")->capture_default_str();
  cmd->add_option("--snapshot-tokens", o.snapshot_tokens,
                  "Keep a copy of the bank (OUT/snapshots/tokens-N, a bank of its own) each time the tokens aligned "
                  "reach the next of these counts, e.g. 1M,3M,10M,30M (suffixes K, M, G)")
      ->delimiter(',')
      ->transform(CLI::AsNumberWithUnit(std::map<std::string, int64_t>{{"k", 1000}, {"m", 1000000}, {"g", 1000000000}},
                                        CLI::AsNumberWithUnit::CASE_INSENSITIVE));
  cmd->add_option("--residual-windows", residual_windows, "Held-out windows for each head's residual in bank.json")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  add_training_loop_flags(cmd, o, {"--save-every", "--log-every", "--resume", "--stop-after"});
  cmd->callback([cmd] {
    warn_if_bf16_is_slow(o);
    parallel::run_data_parallel(o.group, [cmd] {
      TextCodec codec = load_text_codec(teacher_dir);
      CausalLM teacher = io::load_causal_lm(teacher_dir, at::kFloat);
      HybridConfig hc;
      hc.base = teacher->config();
      hc.plan.selector = {{"kind", "none"}};
      hc.ssm = ssm;
      hc.ssm.d_state = resolve_d_state(hc.base, ssm.d_state);
      hc.ssm.init = "attention";
      hc.validate("bank");
      // The same conversion as `convert --plan <none>`: with zero steps the bank assembles every
      // plan exactly as `convert` would initialise it.
      CausalLM bank = convert_from_teacher(teacher, hc, SsmInit::kAttention, 0, decay);
      to_compute_device(*teacher);
      to_compute_device(*bank);
      o.mix.tasks = split_comma_list(tasks_list);
      o.align_trainable = align_trains;
      PretrainData data;
      data.corpus = load_corpus(corpus_path, teacher_dir, codec.encode, codec.tokenizer.vocab_size(), heldout,
                                cmd->count("--heldout-fraction") > 0);
      data.encode = codec.encode;
      data.bos = codec.bos;
      data.write_tokenizer = [](const std::string& out) { io::copy_tokenizer_files(teacher_dir, out); };
      HybridConfig config = hc;
      // bank.json: each head's relative residual on held-out windows (not the training data).
      std::vector<at::Tensor> windows;
      auto write_bank_json = [&](CausalLM& model, const std::string& dir, int64_t steps, int64_t tokens) {
        if (windows.empty()) windows = heldout_windows(data.corpus.heldout, o.seq, residual_windows, data.bos);
        RAD_CHECK(!windows.empty(), "{}: the held-out text is shorter than one {}-token window; use a longer corpus "
                  "or a smaller --seq", corpus_path, o.seq);
        at::Tensor residual = head_residuals(teacher, model, windows, o.batch).cpu();
        int64_t trained_parameters = 0;
        for (const auto& p : model->named_parameters())
          if (align_trains(p.key())) trained_parameters += p.value().numel();
        nlohmann::json heads = nlohmann::json::array();
        const ModelConfig& c = hc.base;
        for (int64_t l = 0; l < c.n_layer; ++l)
          for (int64_t h = 0; h < c.n_head; ++h)
            heads.push_back({{"layer", l}, {"head", h}, {"residual", residual[l][h].item<double>()}});
        nlohmann::json j = {
            {"teacher", fs::absolute(teacher_dir).lexically_normal().string()},
            {"teacher_model_hash", model_hash(teacher)},
            {"steps", steps},
            {"lr", o.align.lr},
            {"batch", o.batch},
            {"seq", o.seq},
            {"tokens", tokens},
            {"trained_parameters", trained_parameters},
            {"residual", "||W_o[:, h] (y_h - z_h)|| / ||W_o[:, h] z_h||, token-summed over held-out windows: the share "
                         "of the head's contribution its replacement misses"},
            {"residual_windows", static_cast<int64_t>(windows.size())},
            {"heads", heads}};
        write_text_atomic((fs::path(dir) / "bank.json").string(), j.dump(2) + "\n");
        return residual;
      };
      // A snapshot is a complete bank of its own (a hybrid directory and bank.json) that `convert
      // --bank`, `select --bank` and `run --bank` take, while this bank trains on.
      o.write_snapshot = [&](CausalLM& model, const std::string& dir, int64_t tokens) {
        io::save_hybrid(model, config, dir);
        write_bank_json(model, dir, tokens / (o.batch * o.seq), tokens);
      };
      distill(teacher, bank, o, data, [config](CausalLM& m, const std::string& dir) { io::save_hybrid(m, config, dir); });
      o.write_snapshot = nullptr;  // (o outlives this scope)
      if (o.group && !o.group->is_main()) return;
      if (o.stop_after > 0 && !fs::exists(fs::path(o.out_dir) / "model.safetensors")) return;  // stopped early
      at::Tensor residual = write_bank_json(bank, o.out_dir, o.align.steps, o.align.steps * o.batch * o.seq);
      log_info("wrote the head bank {} ({} heads; median residual {:.3f})", o.out_dir, hc.base.n_layer * hc.base.n_head,
               residual.flatten().median().item<double>());
    });
  });
}

}  // namespace rad::cli
