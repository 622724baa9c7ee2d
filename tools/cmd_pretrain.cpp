#include <filesystem>
#include <sstream>

#include "commands.h"
#include "rad/core/atomic_file.h"
#include "rad/core/error.h"
#include "rad/core/log.h"
#include "rad/io/hf_config.h"
#include "rad/parallel/process_group.h"
#include "rad/train/pretrain.h"
#include "rad/train/token_shards.h"
#include "text_codec.h"
#include "training_flags.h"

namespace rad::cli {
namespace fs = std::filesystem;

void register_pretrain(CLI::App& app) {
  auto* cmd = app.add_subcommand("pretrain", "Train a Llama-family model from scratch on a corpus plus retrieval tasks");
  static PretrainOptions o;
  static std::string tokenizer_dir, corpus_path, config_path, tasks_list = "mqar";
  static double heldout = 0.02, corpus_share = 0, embedding_decay = 0;
  static bool untied = false;
  static int64_t d_model = 256, n_layer = 6, n_head = 8, n_head_kv = 4, d_ff = 0, max_pos = 1024;
  cmd->add_option("--tokenizer", tokenizer_dir, "Directory with tokenizer.json (its vocabulary sizes the model)")->required();
  cmd->add_option("--corpus", corpus_path,
                  "UTF-8 text file (the last --heldout-fraction of its lines is held out), or a token directory from "
                  "`radistill tokenize-corpus` (memory-mapped)")->required();
  cmd->add_option("--out", o.out_dir, "Output directory: final HF model, metrics.jsonl, checkpoints/")->required();
  cmd->add_option("--config", config_path, "HF config.json to take the architecture from (vocab_size is set from the tokenizer)");
  cmd->add_option("--d-model", d_model, "Hidden size")->capture_default_str();
  cmd->add_option("--n-layer", n_layer, "Layers")->capture_default_str();
  cmd->add_option("--n-head", n_head, "Query heads")->capture_default_str();
  cmd->add_option("--n-head-kv", n_head_kv, "Key/value heads (GQA)")->capture_default_str();
  cmd->add_option("--d-ff", d_ff, "MLP size (default: about 8/3 d_model, a multiple of 32)");
  cmd->add_option("--max-position", max_pos, "max_position_embeddings")->capture_default_str();
  cmd->add_option("--steps", o.schedule.total, "Optimizer steps")->capture_default_str();
  add_training_loop_flags(cmd, o, {"--batch", "--seq"});
  cmd->add_option("--lr", o.schedule.peak, "Peak learning rate")->capture_default_str();
  cmd->add_option("--warmup", o.schedule.warmup, "Warm-up steps")->capture_default_str();
  cmd->add_option("--schedule", o.schedule.kind, "wsd (warmup-stable-decay) or cosine")->capture_default_str();
  cmd->add_option("--min-lr-ratio", o.schedule.min_ratio, "Final lr / peak lr")->capture_default_str();
  cmd->add_option("--decay-fraction", o.schedule.decay_fraction, "WSD: fraction of steps spent decaying")->capture_default_str();
  cmd->add_option("--weight-decay", o.weight_decay, "AdamW weight decay (matrices, and embeddings unless --embedding-weight-decay)")->capture_default_str();
  auto* emb_decay = cmd->add_option("--embedding-weight-decay", embedding_decay,
                                    "Weight decay of embed_tokens and lm_head, in a group of their own (default: --weight-decay; the recipe uses 0)");
  add_training_loop_flags(cmd, o, {"--clip"});
  cmd->add_option("--init-std", o.init_std, "Std of the normal initialisation")->capture_default_str();
  add_training_loop_flags(cmd, o, {"--bf16"});
  cmd->add_option("--seed", o.seed, "Seed for initialisation and data order")->capture_default_str();
  add_training_loop_flags(cmd, o, {"--save-every", "--log-every", "--eval-every", "--probe-pairs", "--probe-examples"});
  auto* task_share = cmd->add_option("--task-share", o.mix.task_share, "Fraction of sequences that are task sequences")->capture_default_str();
  auto* corpus_share_opt = cmd->add_option("--corpus-share", corpus_share, "Fraction of sequences that are corpus windows (1 - --task-share; give one of the two)");
  cmd->add_option("--tasks", tasks_list, "Comma-separated tasks to train on (kv, mqar, needle, phonebook, copy)")->capture_default_str();
  add_training_loop_flags(cmd, o, {"--min-pairs", "--max-pairs", "--queries"});
  cmd->add_option("--answer-weight", o.mix.answer_weight, "Loss weight of task answer tokens")->capture_default_str();
  cmd->add_option("--copy-share", o.mix.copy_share, "Recipe: share of task rows that are copy rows (BOS span SEP span)");
  cmd->add_option("--compact-share", o.mix.compact_share, "Recipe: share of task rows that are compact MQAR rows (K V ... SEP K V)");
  cmd->add_option("--offset-share", o.mix.offset_share, "Recipe: share of task rows that are dictionary-style offset rows (K : V K NL)");
  cmd->add_option("--paper-share", o.mix.paper_share, "Recipe: share of task rows in the probe's own format (the four shares sum to 1; any > 0 replaces --tasks)");
  cmd->add_flag("--answer-only", o.mix.answer_only, "Task rows: loss on the answers only (other task tokens weight 0)");
  cmd->add_flag("--queries-all", o.mix.queries_all, "kv task rows query every pair (up to --queries) instead of one");
  cmd->add_flag("--one-per-row", o.mix.one_per_row, "One task example per row, padded with loss weight 0 (no packing)");
  cmd->add_option("--pair-stages", o.mix.pair_stages, "Curriculum: largest dictionary per stage, e.g. 8,20,50 (replaces --max-pairs)")->delimiter(',');
  cmd->add_option("--stage-steps", o.mix.stage_steps, "Curriculum: first step of each stage, e.g. 0,2000,4000")->delimiter(',');
  cmd->add_option("--stage-corpus", o.mix.stage_corpus_share, "Curriculum: corpus share per stage, e.g. 0,0.1,0.2 (overrides --corpus-share)")->delimiter(',');
  cmd->add_option("--advance-at", o.advance_at, "Curriculum: move to the next stage early once the training-key probe at the stage's size reaches this accuracy (0: off)")->capture_default_str();
  cmd->add_flag("--untied", untied, "Untied input and output embeddings (a separate lm_head)");
  auto* heldout_opt =
      cmd->add_option("--heldout-fraction", heldout, "Fraction of corpus lines held out for perplexity")->capture_default_str();
  add_training_loop_flags(cmd, o, {"--resume"});
  cmd->add_flag("--skip-nonfinite", o.skip_nonfinite, "Skip batches whose loss is NaN/Inf instead of stopping");
  add_training_loop_flags(cmd, o, {"--stop-after"});
  cmd->callback([task_share, corpus_share_opt, emb_decay, heldout_opt] {
    warn_if_bf16_is_slow(o);
    RAD_CHECK(task_share->count() == 0 || corpus_share_opt->count() == 0,
              "give --task-share or --corpus-share (= 1 - task share), not both");
    if (corpus_share_opt->count() > 0) {
      RAD_CHECK(corpus_share >= 0 && corpus_share <= 1, "--corpus-share must be in [0, 1], got {}", corpus_share);
      o.mix.task_share = 1.0 - corpus_share;
    }
    if (emb_decay->count() > 0) o.embedding_weight_decay = embedding_decay;
    // Data-parallel when started with the torchrun environment (e.g. by `radistill launch`).
    parallel::run_data_parallel(o.group, [&] {
      TextCodec codec = load_text_codec(tokenizer_dir);
      if (!config_path.empty()) {
        o.model = io::load_hf_config(config_path);
      } else {
        nlohmann::json j = {{"architectures", {"LlamaForCausalLM"}}, {"hidden_size", d_model},
                            {"num_hidden_layers", n_layer}, {"num_attention_heads", n_head},
                            {"num_key_value_heads", n_head_kv},
                            {"intermediate_size", d_ff > 0 ? d_ff : ((8 * d_model / 3 + 31) / 32) * 32},
                            {"max_position_embeddings", max_pos}, {"vocab_size", 1}, {"rms_norm_eps", 1e-5},
                            {"rope_theta", 10000.0}, {"tie_word_embeddings", true}};
        o.model = io::config_from_hf_json(j, "pretrain flags");
      }
      if (untied) {
        o.model.tie_word_embeddings = false;
        o.model.raw["tie_word_embeddings"] = false;
      }
      o.model.n_vocab = codec.tokenizer.vocab_size();
      o.model.raw["vocab_size"] = o.model.n_vocab;
      if (codec.bos) o.model.bos_token_id = codec.bos;
      if (auto eos = codec.tokenizer.eos_id()) o.model.eos_token_ids = {*eos};
      o.mix.tasks = split_comma_list(tasks_list);
      PretrainData data;
      data.corpus = load_corpus(corpus_path, tokenizer_dir, codec.encode, codec.tokenizer.vocab_size(), heldout,
                                heldout_opt->count() > 0);
      data.encode = codec.encode;
      data.bos = codec.bos;
      data.write_tokenizer = [](const std::string& out) {
        for (const char* f : {"tokenizer.json", "tokenizer_config.json"}) {
          fs::path src = fs::path(tokenizer_dir) / f;
          if (fs::exists(src)) write_text_atomic((fs::path(out) / f).string(), read_text_file(src.string()));
        }
      };
      log_info("corpus: {} training tokens, {} held-out tokens; model: {} layers x {} heads, d_model {}, vocab {}",
               data.corpus.train.size(), data.corpus.heldout.size(), o.model.n_layer, o.model.n_head, o.model.d_model,
               o.model.n_vocab);
      pretrain(o, data);
    });
  });
}

}  // namespace rad::cli
