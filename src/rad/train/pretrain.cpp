#include "rad/train/pretrain.h"

#include <ATen/autocast_mode.h>
#include <torch/nn/utils/clip_grad.h>
#include <torch/optim/adamw.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>

#include "rad/core/atomic_file.h"
#include "rad/core/device.h"
#include "rad/core/error.h"
#include "rad/core/log.h"
#include "rad/core/progress.h"
#include "rad/io/checkpoint.h"
#include "rad/model/causal_lm.h"
#include "rad/parallel/process_group.h"
#include "rad/parallel/shard.h"
#include "rad/train/checkpoint.h"
#include "rad/train/optim.h"
#include "rad/train/teacher_task_rows.h"
#include "rad/train/settings.h"

namespace rad {
namespace fs = std::filesystem;

namespace {

// Token length of the longest recipe paper row at `pairs` pairs (queries capped at `queries`).
int64_t longest_paper_row(const RecipeTokens& t, int64_t pairs, int64_t queries) {
  const int64_t q = std::min(pairs, queries);
  const int64_t per_query = static_cast<int64_t>(t.query_prefix.size() + 1 + t.query_suffix.size()) + 2;
  return (t.bos ? 1 : 0) + static_cast<int64_t>(t.header.size()) + 4 * pairs + q * per_query + (q - 1);
}

nlohmann::json telemetry_record(const RecipeTelemetry& tm) {
  nlohmann::json j;
  for (const RecipeProbe& p : tm.probes) {
    j[fmt::format("probe_train_{}", p.pairs)] = p.train;
    j[fmt::format("probe_train_{}_listed", p.pairs)] = p.train_listed;
    j[fmt::format("probe_heldout_{}", p.pairs)] = p.heldout;
    j[fmt::format("probe_heldout_{}_listed", p.pairs)] = p.heldout_listed;
  }
  if (!tm.skipped.empty()) j["probe_skipped_pairs"] = tm.skipped;
  j["cos_heldout_keys"] = tm.heldout_key_cosine;
  j["cos_train_keys"] = tm.train_key_cosine;
  return j;
}

}  // namespace

void pretrain(const PretrainOptions& opt, const PretrainData& data) {
  opt.schedule.validate();
  opt.mix.validate();
  RAD_CHECK(opt.advance_at >= 0 && opt.advance_at <= 1, "--advance-at must be in [0, 1] (0: off), got {}",
            opt.advance_at);
  RAD_CHECK(!opt.embedding_weight_decay || *opt.embedding_weight_decay >= 0,
            "--embedding-weight-decay must be >= 0, got {}", opt.embedding_weight_decay.value_or(0));
  for (int64_t n : opt.telemetry_pairs)
    RAD_CHECK(n >= 1 && n <= 100, "telemetry probe sizes must be in [1, 100] (values 0-99), got {}", n);
  RAD_CHECK(opt.batch >= 1 && opt.seq >= 8, "batch must be >= 1 and seq >= 8 (got {} and {})", opt.batch, opt.seq);
  RAD_CHECK(opt.seq <= opt.model.max_position_embeddings, "seq {} exceeds max_position_embeddings {}", opt.seq,
            opt.model.max_position_embeddings);
  parallel::ProcessGroup single_process;
  parallel::ProcessGroup& group = opt.group ? *opt.group : single_process;
  const bool main_rank = group.is_main();
  const parallel::RowShard shard = parallel::shard_rows(opt.batch, group.rank(), group.world_size());
  // The recipe's token tables: needed for recipe rows, and used for the retrieval telemetry whenever
  // the tokenizer allows them (keys and values as single tokens).
  std::optional<RecipeTokens> recipe;
  if (opt.mix.recipe()) {
    recipe = RecipeTokens::build(data.encode, data.bos);
  } else {
    try {
      recipe = RecipeTokens::build(data.encode, data.bos);
    } catch (const Error& e) {
      RAD_CHECK(opt.advance_at == 0, "--advance-at needs the recipe telemetry, which this tokenizer cannot give: {}",
                e.what());
      log_info("no recipe telemetry: {}", e.what());
    }
  }
  if (opt.mix.recipe())
    for (int64_t s = 0; s < opt.mix.stages(); ++s)
      RAD_CHECK(opt.mix.max_pairs_at(s) <= std::min<int64_t>(100, recipe->train_keys.size()),
                "--pair-stages / --max-pairs: recipe rows hold at most {} pairs (values are 0-99, {} training keys), "
                "got {}", std::min<int64_t>(100, recipe->train_keys.size()), recipe->train_keys.size(),
                opt.mix.max_pairs_at(s));
  if (recipe) {
    log_info("recipe keys: {} training, {} held-out (one token in probe form)", recipe->train_keys.size(),
             recipe->heldout_keys.size());
    const int64_t longest = longest_paper_row(*recipe, opt.mix.max_pairs_at(opt.mix.stages() - 1), opt.mix.queries);
    if (opt.mix.recipe() && opt.mix.one_per_row && opt.mix.paper_share > 0 && longest > opt.seq + 1)
      log_warn("a paper row at {} pairs and {} queries has {} tokens, more than --seq {} + 1: its last answers are "
               "cut off", opt.mix.max_pairs_at(opt.mix.stages() - 1), opt.mix.queries, longest, opt.seq);
  }
  auto existing = open_run_dir(opt.out_dir, opt.resume, "training run");
  const std::string metrics_path = (fs::path(opt.out_dir) / "metrics.jsonl").string();

  torch::manual_seed(opt.seed);
  CausalLM model(opt.model);
  init_parameters(*model, opt.init_std, opt.seed);
  to_compute_device(*model);  // before the optimizer, whose state follows the parameters
  model->train();
  auto adamw = make_adamw(model, opt.weight_decay, opt.schedule.peak, nullptr, opt.embedding_weight_decay);
  torch::optim::AdamW& optimizer = *adamw;
  int64_t start_step = 0;
  double elapsed_before = 0;
  int64_t adaptive_stage = 0;  // the stage an adaptive advance reached (0: none)
  if (existing) {
    nlohmann::json state = load_training_checkpoint(*existing, model, optimizer);
    start_step = state.at("step").get<int64_t>();
    elapsed_before = state.value("elapsed_seconds", 0.0);
    adaptive_stage = state.value("curriculum_stage", int64_t{0});
    if (main_rank) truncate_metrics_log(metrics_path, start_step);
    log_info("resuming from {} (step {})", *existing, start_step);
  } else if (main_rank && fs::exists(metrics_path)) {
    fs::remove(metrics_path);
  }
  if (main_rank) data.write_tokenizer(opt.out_dir);
  if (group.distributed()) {
    // Every rank must train the same thing from the same point: same arguments, corpus and checkpoint.
    nlohmann::json settings = training_loop_settings(opt, data.corpus);
    settings["model"] = opt.model.raw;
    settings["schedule"] = {{"kind", opt.schedule.kind},       {"peak", opt.schedule.peak},
                            {"warmup", opt.schedule.warmup},   {"total", opt.schedule.total},
                            {"min_ratio", opt.schedule.min_ratio}, {"decay_fraction", opt.schedule.decay_fraction}};
    settings["init_std"] = opt.init_std;
    settings["embedding_weight_decay"] =
        opt.embedding_weight_decay ? nlohmann::json(*opt.embedding_weight_decay) : nlohmann::json(nullptr);
    settings["skip_nonfinite"] = opt.skip_nonfinite;
    settings["advance_at"] = opt.advance_at;
    if (opt.advance_at > 0) settings["eval_every"] = opt.eval_every;  // the adaptive stage moves at evaluations
    group.check_same("the training settings", settings);
    group.check_same("the resume point",
                     {{"step", start_step},
                      {"checkpoint", existing ? fs::path(*existing).filename().string() : std::string("none")}});
  }
  // Every rank starts from rank 0's weights (they agree already: same seed or same checkpoint). As
  // the first collective this is also the start barrier: rank 0 cannot write a checkpoint before
  // every rank has read the run directory.
  group.broadcast(model->parameters(), 0, "the broadcast of the initial parameters from rank 0");

  const int64_t total = opt.schedule.total;
  std::optional<Progress> progress;
  if (main_rank) progress.emplace("pretrain", total, "steps", start_step);
  auto t_start = std::chrono::steady_clock::now();
  auto seconds = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count(); };
  double loss_ema = -1;
  int64_t tokens_since = 0;
  double t_since = seconds();
  auto save = [&](int64_t step) {
    if (!main_rank) return;  // every rank holds the same weights and optimizer state
    save_training_checkpoint(opt.out_dir, step, model, optimizer,
                             {{"step", step},
                              {"elapsed_seconds", elapsed_before + seconds()},
                              {"seed", opt.seed},
                              {"curriculum_stage", adaptive_stage},
                              {"world_size", group.world_size()}});
  };
  const bool staged = opt.mix.stages() > 1;
  auto stage_at = [&](int64_t step) { return std::max(opt.mix.stage_at(step), adaptive_stage); };
  for (int64_t step = start_step; step < total; ++step) {
    const int64_t stage = stage_at(step);
    // A data-parallel rank reads the corpus windows of its own rows only (the same rows as one process).
    Batch b = on_compute_device(make_batch(data.corpus.train, opt.mix, data.encode, data.bos, opt.batch, opt.seq,
                                           opt.seed, step, stage, recipe ? &*recipe : nullptr,
                                           group.distributed() ? &shard : nullptr));
    double lr = opt.schedule.at(step);
    set_learning_rate(optimizer, lr);
    // This rank's rows of the global batch; its loss is its share of the global mean (normalised by
    // the global weight total), so the summed gradients are those of the single-process loss.
    const at::Tensor weight_total = cross_entropy_weight_total(b.weights);
    auto rows = [&](const at::Tensor& t) { return group.distributed() ? t.narrow(0, shard.begin, shard.count) : t; };
    at::Tensor loss;
    {
      AutocastBF16 autocast(opt.bf16);
      loss = weighted_cross_entropy_share(model->forward(rows(b.input_ids)), rows(b.targets), rows(b.weights),
                                          weight_total);
    }
    optimizer.zero_grad();
    loss.backward();
    // The global loss rides in the gradient buffer: one collective per step, and every rank sees the
    // same loss, so all of them skip or stop on a non-finite one together.
    at::Tensor loss_sum = loss.detach().to(at::kFloat).reshape({1}).clone();
    group.allreduce_gradients(model->parameters(), parallel::Reduce::kSum, &loss_sum,
                              fmt::format("the gradient all-reduce of step {}", step + 1));
    double loss_value = loss_sum.item<double>();
    if (!std::isfinite(loss_value)) {
      auto last = latest_checkpoint(opt.out_dir);
      if (opt.skip_nonfinite) {
        log_warn("step {}: loss is {}; skipping this batch", step + 1, loss_value);
        optimizer.zero_grad();
        continue;
      }
      fail("step {}: loss is {} (not finite); training stopped. Last good checkpoint: {}. Lower the learning rate "
           "or pass --skip-nonfinite, then --resume.",
           step + 1, loss_value, last.value_or("none"));
    }
    // Clipping sees the global gradient (after the all-reduce), as one process would.
    double grad_norm = torch::nn::utils::clip_grad_norm_(model->parameters(), opt.clip);
    optimizer.step();
    tokens_since += opt.batch * opt.seq;
    loss_ema = loss_ema < 0 ? loss_value : 0.95 * loss_ema + 0.05 * loss_value;
    const int64_t done = step + 1;
    if (!main_rank) {
      // Only rank 0 logs and evaluates.
    } else if (done % opt.log_every == 0 || done == total) {
      double now = seconds();
      double tps = tokens_since / std::max(1e-9, now - t_since);
      tokens_since = 0;
      t_since = now;
      nlohmann::json line = {{"step", done}, {"loss", loss_value}, {"lr", lr}, {"grad_norm", grad_norm},
                             {"tokens_per_s", tps}, {"elapsed_s", elapsed_before + now}};
      if (staged) {
        line["stage"] = stage;
        line["max_pairs"] = opt.mix.max_pairs_at(stage);
      }
      append_jsonl(metrics_path, line);
      progress->update(done, fmt::format("loss {:.3f} | lr {:.2e} | {:.0f} tok/s", loss_ema, lr, tps));
    } else {
      progress->update(done);
    }
    const bool eval_now = done % opt.eval_every == 0 || done == total;
    if (main_rank && eval_now) {
      EvalMetrics m = evaluate_lm(model, data, opt.probe_pairs, opt.probe_examples, opt.seq, opt.ppl_windows, 1234);
      nlohmann::json record = {{"step", done}, {"probe_accuracy", m.probe.value()}, {"probe_pairs", opt.probe_pairs},
                               {"heldout_perplexity", m.perplexity}};
      log_info("step {}: KV probe ({} pairs) {:.1f}%, held-out perplexity {:.2f}", done, opt.probe_pairs,
               100 * m.probe.value(), m.perplexity);
      if (recipe) {
        RecipeTelemetry tm = recipe_telemetry(model, *recipe, opt.telemetry_pairs, opt.probe_examples, opt.seq, 4321);
        record.update(telemetry_record(tm));
        std::string summary;
        for (const RecipeProbe& p : tm.probes)
          summary += fmt::format(" | {} pairs: train {:.0f}% (listed {:.0f}%), held-out {:.0f}%", p.pairs,
                                 100 * p.train, 100 * p.train_listed, 100 * p.heldout);
        log_info("step {}: paper probe{}; held-out key cosine {:.3f}", done, summary, tm.heldout_key_cosine);
        // Adaptive curriculum: the next stage once the current largest size is solved on training keys.
        if (opt.advance_at > 0 && stage + 1 < opt.mix.stages()) {
          const int64_t mp = opt.mix.max_pairs_at(stage);
          std::optional<double> acc;
          for (const RecipeProbe& p : tm.probes)
            if (p.pairs == mp) acc = p.train;
          if (!acc) {
            RecipeTelemetry at_mp = recipe_telemetry(model, *recipe, {mp}, opt.probe_examples, opt.seq, 4321);
            if (!at_mp.probes.empty()) acc = at_mp.probes[0].train;
          }
          if (acc && *acc >= opt.advance_at) {
            adaptive_stage = stage + 1;
            log_info("step {}: training-key accuracy {:.1f}% at {} pairs: curriculum stage {} ({} pairs)", done,
                     100 * *acc, mp, adaptive_stage, opt.mix.max_pairs_at(adaptive_stage));
          }
        }
        if (staged) {
          record["stage"] = stage_at(done);
          record["max_pairs"] = opt.mix.max_pairs_at(stage_at(done));
        }
      }
      append_jsonl(metrics_path, record);
    }
    if (eval_now && opt.advance_at > 0 && group.distributed()) {
      // The adaptive curriculum follows rank 0's evaluation; every rank must draw the same stage.
      at::Tensor s = at::full({1}, adaptive_stage, at::kLong);
      group.broadcast({s}, 0, fmt::format("the broadcast of the curriculum stage after step {}", done));
      adaptive_stage = s.item<int64_t>();
    }
    if (done % opt.save_every == 0 || done == total) save(done);
    if (opt.stop_after > 0 && done >= opt.stop_after && done < total) {
      save(done);
      log_info("stopping after step {} as asked (--stop-after); resume with --resume", done);
      return;
    }
  }
  if (progress) progress->finish();
  model->eval();
  if (main_rank) io::save_causal_lm(model, opt.out_dir);
  // No rank reports success before the model is written.
  group.barrier("the final barrier (rank 0 writes the model)");
}

}  // namespace rad
