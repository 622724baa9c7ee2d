#include "rad/distill/distill.h"

#include <torch/nn/utils/clip_grad.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <optional>

#include <fmt/ranges.h>

#include "rad/core/atomic_file.h"
#include "rad/core/error.h"
#include "rad/core/log.h"
#include "rad/core/progress.h"
#include "rad/distill/head_bank.h"
#include "rad/distill/teacher_cache.h"
#include "rad/parallel/process_group.h"
#include "rad/parallel/shard.h"
#include "rad/train/optim.h"
#include "rad/train/schedule.h"
#include "rad/train/settings.h"

namespace rad {
namespace fs = std::filesystem;

at::Tensor hidden_alignment_loss(CausalLM& student, const std::vector<at::Tensor>& teacher_in,
                                 const std::vector<at::Tensor>& teacher_out, int64_t global_tokens) {
  at::Tensor total;
  for (size_t l = 0; l < teacher_in.size(); ++l) {
    at::Tensor out = student->run_layers(teacher_in[l], l, l + 1);
    at::Tensor norms = (out.to(at::kFloat) - teacher_out[l].to(at::kFloat)).norm(2, -1);
    at::Tensor err = global_tokens > 0 ? norms.sum() / static_cast<double>(global_tokens) : norms.mean();
    total = total.defined() ? total + err : err;
  }
  return total;
}

namespace {

struct StageRun {
  const char* name;
  const DistillStage* stage;
  uint64_t seed_offset;
};

LrSchedule stage_schedule(const DistillOptions& o, const DistillStage& s) {
  LrSchedule sched;
  sched.kind = "wsd";
  sched.peak = s.lr;
  sched.total = s.steps;
  sched.warmup = static_cast<int64_t>(o.warmup_fraction * s.steps);
  sched.decay_fraction = o.decay_fraction;
  sched.min_ratio = 0.1;
  sched.validate();
  return sched;
}

}  // namespace

void distill(CausalLM& teacher, CausalLM& student, const DistillOptions& o, const PretrainData& data,
             const ModelSaver& save_model) {
  o.mix.validate();
  RAD_CHECK(o.align_target == "layers" || o.align_target == "heads",
            "distill: unknown alignment target \"{}\" (expected layers or heads)", o.align_target);
  const bool align_heads = o.align_target == "heads";
  RAD_CHECK(o.align.steps >= 0 && o.kd.steps >= 0 && o.align.steps + o.kd.steps > 0,
            "distill: give at least one stage some steps (--align-steps, --kd-steps)");
  const ModelConfig& tc = teacher->config();
  const ModelConfig& sc = student->config();
  RAD_CHECK(tc.n_layer == sc.n_layer && tc.d_model == sc.d_model && tc.n_vocab == sc.n_vocab,
            "distill: teacher ({} layers, d_model {}, vocab {}) and student ({} layers, d_model {}, vocab {}) do not match",
            tc.n_layer, tc.d_model, tc.n_vocab, sc.n_layer, sc.d_model, sc.n_vocab);
  RAD_CHECK(std::is_sorted(o.snapshot_tokens.begin(), o.snapshot_tokens.end()) &&
                (o.snapshot_tokens.empty() || o.snapshot_tokens.front() > 0),
            "distill: snapshot token counts must be positive and ascending (got {})", fmt::join(o.snapshot_tokens, ","));
  RAD_CHECK(o.seq <= tc.max_position_embeddings, "seq {} exceeds max_position_embeddings {}", o.seq,
            tc.max_position_embeddings);
  parallel::ProcessGroup single_process;
  parallel::ProcessGroup& group = o.group ? *o.group : single_process;
  const bool main_rank = group.is_main();
  const parallel::RowShard shard = parallel::shard_rows(o.batch, group.rank(), group.world_size());
  auto existing = open_run_dir(o.out_dir, o.resume, "distillation run");
  const std::string metrics_path = (fs::path(o.out_dir) / "metrics.jsonl").string();
  teacher->eval();
  for (auto& p : teacher->parameters()) p.set_requires_grad(false);
  student->set_activation_checkpointing(o.activation_checkpointing);
  RAD_CHECK(o.teacher_cache.empty() || !o.bf16,
            "distill: the teacher cache ({}) holds float32 states and cannot be used with bf16 autocast", o.teacher_cache);
  TeacherHiddenCache teacher_cache(o.kd.steps > 0 ? o.teacher_cache : std::string(), teacher);

  // Resume position: (stage index, step within stage).
  std::string resume_stage;
  int64_t resume_step = 0, global_done = 0;
  nlohmann::json resume_state;
  if (existing) {
    resume_state = nlohmann::json::parse(read_text_file((fs::path(*existing) / "state.json").string()));
    resume_stage = resume_state.at("stage").get<std::string>();
    resume_step = resume_state.at("step").get<int64_t>();
    if (main_rank) truncate_metrics_log(metrics_path, resume_state.at("global_step").get<int64_t>());
    log_info("resuming from {} (stage {}, step {})", *existing, resume_stage, resume_step);
  } else if (main_rank && fs::exists(metrics_path)) {
    fs::remove(metrics_path);
  }
  if (main_rank) data.write_tokenizer(o.out_dir);
  if (group.distributed()) {
    // Every rank must distil the same thing from the same point: same arguments, models, corpus and
    // checkpoint.
    nlohmann::json settings = training_loop_settings(o, data.corpus);
    settings["teacher"] = tc.raw;
    settings["student"] = sc.raw;
    settings["student_parameters"] = student->parameters().size();
    settings["align"] = {o.align.steps, o.align.lr};
    settings["kd"] = {o.kd.steps, o.kd.lr};
    settings["ce_weight"] = o.ce_weight;
    settings["warmup_fraction"] = o.warmup_fraction;
    settings["decay_fraction"] = o.decay_fraction;
    group.check_same("the distillation settings", settings);
    group.check_same("the resume point",
                     {{"stage", resume_stage}, {"step", resume_step},
                      {"checkpoint", existing ? fs::path(*existing).filename().string() : std::string("none")}});
  }

  const StageRun stages[] = {{"align", &o.align, 0x1000}, {"kd", &o.kd, 0x2000}};
  bool skipping = existing.has_value();
  for (const auto& run : stages) {
    const DistillStage& st = *run.stage;
    if (st.steps == 0) continue;
    if (skipping && resume_stage != run.name) {  // finished before the interruption
      global_done += st.steps;
      continue;
    }
    LrSchedule sched = stage_schedule(o, st);
    bool is_align = std::string(run.name) == "align";
    auto optimizer = make_adamw(student, o.weight_decay, st.lr, is_align ? o.align_trainable : o.kd_trainable);
    int64_t start = 0;
    if (skipping) {
      load_training_checkpoint(*existing, student, *optimizer);
      start = resume_step;
      global_done += start;
      skipping = false;
    }
    // Every rank starts the stage from rank 0's weights (they agree already); as the first
    // collective this is also the start barrier (rank 0 writes no checkpoint before all have read).
    group.broadcast(student->parameters(), 0, fmt::format("the broadcast of the student from rank 0 ({})", run.name));
    student->train();
    std::optional<Progress> progress;
    if (main_rank) progress.emplace(std::string("distill ") + run.name, st.steps, "steps", start);
    auto t0 = std::chrono::steady_clock::now();
    double t_last = 0;
    int64_t tokens = 0;
    auto seconds = [&] { return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(); };
    // A snapshot when the tokens done reach the next count of o.snapshot_tokens not yet covered by
    // one already on disk (written atomically: a folder renamed into place).
    auto take_snapshot = [&](int64_t steps_done) {
      if (o.snapshot_tokens.empty()) return;
      const int64_t done_tokens = steps_done * o.batch * o.seq;
      const auto have = list_snapshots(o.out_dir);
      const int64_t covered = have.empty() ? 0 : have.back().first;
      auto next = std::upper_bound(o.snapshot_tokens.begin(), o.snapshot_tokens.end(), covered);
      if (next == o.snapshot_tokens.end() || done_tokens < *next) return;
      const fs::path dir = fs::path(o.out_dir) / "snapshots" / fmt::format("tokens-{}", done_tokens);
      const fs::path tmp = dir.string() + ".partial";
      fs::remove_all(tmp);
      fs::create_directories(tmp);
      if (o.write_snapshot) o.write_snapshot(student, tmp.string(), done_tokens);
      else save_model(student, tmp.string());
      data.write_tokenizer(tmp.string());
      fs::rename(tmp, dir);
      student->train();
      log_info("snapshot at {} tokens (step {}): {}", done_tokens, steps_done, dir.string());
    };
    auto save = [&](int64_t step) {
      if (!main_rank) return;  // every rank holds the same weights and optimizer state
      save_training_checkpoint(o.out_dir, global_done, student, *optimizer,
                               {{"stage", run.name}, {"step", step}, {"global_step", global_done}, {"seed", o.seed},
                                {"world_size", group.world_size()}},
                               save_model);
    };
    for (int64_t step = start; step < st.steps; ++step) {
      // A data-parallel rank reads the corpus windows of its own rows only (the same rows as one process).
      Batch b = on_compute_device(make_batch(data.corpus.train, o.mix, data.encode, data.bos, o.batch, o.seq,
                                             o.seed + run.seed_offset, step, group.distributed() ? &shard : nullptr));
      double lr = sched.at(step);
      set_learning_rate(*optimizer, lr);
      // Data-parallel: this rank's rows, and loss shares normalised by the global batch so that the
      // summed gradients are the single-process ones (one process keeps the plain means).
      const bool dp = group.distributed();
      const int64_t global_tokens = b.input_ids.numel();
      auto rows = [&](const at::Tensor& t) { return dp ? t.narrow(0, shard.begin, shard.count) : t; };
      const at::Tensor input = rows(b.input_ids);
      at::Tensor loss, kl, ce;
      HeadErrorSums head_sums;
      {
        AutocastBF16 autocast(o.bf16);
        // The teacher's outputs exist for this batch only (never stored for the corpus): its
        // residual streams for alignment, its logits for KD. Alignment does not need the logits,
        // so their [batch, seq, vocab] tensor is not computed there.
        const bool logging = main_rank && ((step + 1) % o.log_every == 0 || step + 1 == st.steps);
        if (is_align && align_heads) {
          // One teacher pass gives every head's target (its per-head outputs).
          loss = head_alignment_loss(student, capture_teacher_heads(teacher, input), dp ? global_tokens : 0,
                                     logging ? &head_sums : nullptr);
        } else if (is_align) {
          std::vector<at::Tensor> t_in, t_out;
          {
            at::NoGradGuard no_grad;
            ForwardHooks capture;
            capture.residual_in = &t_in;
            capture.residual_out = &t_out;
            teacher->run_layers(teacher->embed(input), 0, tc.n_layer, nullptr, &capture);
          }
          loss = hidden_alignment_loss(student, t_in, t_out, dp ? global_tokens : 0);
        } else {
          at::Tensor t_logits = teacher_cache.logits(teacher, input);
          at::Tensor s_logits = student->forward(input);
          kl = dp ? kl_divergence_share(t_logits, s_logits, global_tokens) : kl_divergence(t_logits, s_logits);
          loss = kl;
          if (o.ce_weight > 0) {
            ce = dp ? weighted_cross_entropy_share(s_logits, rows(b.targets), rows(b.weights),
                                                   cross_entropy_weight_total(b.weights))
                    : weighted_cross_entropy(s_logits, b.targets, b.weights);
            loss = loss + o.ce_weight * ce;
          }
        }
      }
      optimizer->zero_grad();
      loss.backward();
      // The global loss (and its KL and CE parts) ride in the gradient buffer: one collective a step.
      const at::Tensor zero = at::zeros({}, loss.options().dtype(at::kFloat));  // on the loss's device
      at::Tensor sums = at::stack({loss.detach().to(at::kFloat), kl.defined() ? kl.detach().to(at::kFloat) : zero,
                                   ce.defined() ? ce.detach().to(at::kFloat) : zero});
      group.allreduce_gradients(student->parameters(), parallel::Reduce::kSum, &sums,
                                fmt::format("the gradient all-reduce of {} step {}", run.name, step + 1));
      double value = sums[0].item<double>();
      RAD_CHECK(std::isfinite(value), "distill {} step {}: loss is {} (not finite); stopped. Last good checkpoint: {}",
                run.name, step + 1, value, latest_checkpoint(o.out_dir).value_or("none"));
      // Clipping sees the global gradient (after the all-reduce), as one process would.
      double grad_norm = torch::nn::utils::clip_grad_norm_(student->parameters(), o.clip);
      optimizer->step();
      ++global_done;
      tokens += o.batch * o.seq;
      const int64_t done = step + 1;
      if (!main_rank) {
        // Only rank 0 logs and evaluates.
      } else if (done % o.log_every == 0 || done == st.steps) {
        double now = seconds();
        double tps = tokens / std::max(1e-9, now - t_last);
        tokens = 0;
        t_last = now;
        nlohmann::json rec = {{"step", global_done}, {"stage", run.name}, {"stage_step", done}, {"loss", value},
                              {"lr", lr}, {"grad_norm", grad_norm}, {"tokens_per_s", tps}};
        if (kl.defined()) rec["kl"] = sums[1].item<double>();
        if (head_sums.error.defined()) {
          // Each head's relative residual on this batch (this rank's rows): ||error|| / ||target||.
          at::Tensor rel = head_sums.error / head_sums.target.clamp_min(1e-12);
          std::vector<std::vector<double>> grid(tc.n_layer);
          for (int64_t l = 0; l < tc.n_layer; ++l)
            for (int64_t h = 0; h < tc.n_head; ++h) grid[l].push_back(rel[l][h].item<double>());
          rec["head_residual"] = grid;
        }
        if (ce.defined()) rec["ce"] = sums[2].item<double>();
        append_jsonl(metrics_path, rec);
        progress->update(done, fmt::format("loss {:.4f} | lr {:.2e} | {:.0f} tok/s", value, lr, tps));
      } else {
        progress->update(done);
      }
      if (main_rank && o.eval_every > 0 && (done % o.eval_every == 0 || done == st.steps)) {
        EvalMetrics m = evaluate_lm(student, data, o.probe_pairs, o.probe_examples, o.seq, o.ppl_windows, 1234);
        append_jsonl(metrics_path, {{"step", global_done}, {"stage", run.name}, {"probe_accuracy", m.probe.value()},
                                    {"probe_pairs", o.probe_pairs}, {"heldout_perplexity", m.perplexity}});
        log_info("{} step {}: student KV probe ({} pairs) {:.1f}%, held-out perplexity {:.2f}", run.name, done,
                 o.probe_pairs, 100 * m.probe.value(), m.perplexity);
      }
      if (done % o.save_every == 0 || done == st.steps) save(done);
      if (main_rank) take_snapshot(global_done);
      if (o.stop_after > 0 && global_done >= o.stop_after && done < st.steps) {
        save(done);
        log_info("stopping after {} steps as asked (--stop-after); resume with --resume", global_done);
        return;
      }
    }
    if (progress) progress->finish();
  }
  student->eval();
  if (main_rank && teacher_cache.enabled())
    log_info("teacher cache {}: {} KD batches read, {} computed and written", o.teacher_cache, teacher_cache.hits(),
             teacher_cache.misses());
  if (main_rank) save_model(student, o.out_dir);
  // No rank reports success before the model is written.
  group.barrier("the final barrier (rank 0 writes the model)");
}

std::vector<std::pair<int64_t, std::string>> list_snapshots(const std::string& out_dir) {
  std::vector<std::pair<int64_t, std::string>> found;
  const fs::path folder = fs::path(out_dir) / "snapshots";
  std::error_code ec;
  if (!fs::is_directory(folder, ec)) return found;
  for (const auto& e : fs::directory_iterator(folder)) {
    const std::string name = e.path().filename().string();
    if (!e.is_directory() || name.rfind("tokens-", 0) != 0 || name.find('.') != std::string::npos) continue;
    const std::string digits = name.substr(7);
    if (digits.empty() || digits.find_first_not_of("0123456789") != std::string::npos) continue;
    found.emplace_back(std::stoll(digits), e.path().string());
  }
  std::sort(found.begin(), found.end());
  return found;
}

bool align_trains(const std::string& n) { return n.find(".self_attn.ssm.") != std::string::npos; }

bool kd_trains(const std::string& n, bool freeze_kept_heads) {
  if (n.find("embed_tokens") != std::string::npos || n.rfind("lm_head", 0) == 0) return false;
  if (freeze_kept_heads && (n.find(".self_attn.q_proj") != std::string::npos ||
                            n.find(".self_attn.k_proj") != std::string::npos ||
                            n.find(".self_attn.v_proj") != std::string::npos))
    return false;
  return true;
}

}  // namespace rad
