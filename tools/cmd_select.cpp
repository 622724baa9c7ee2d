// `radistill select`: the kept set by sufficiency (rad/heads/sufficiency.h), from a head bank and the
// necessity ranking of `radistill heads`, on the "select" keys of the heads sweep's probe. Writes
// plan.json (the chosen set), sufficiency.json (the greedy path, the necessity top-k curve, every
// accuracy with its Wilson interval and n) and sufficiency.svg.
#include <filesystem>
#include <optional>

#include "commands.h"
#include "rad/core/atomic_file.h"
#include "rad/core/device.h"
#include "rad/core/error.h"
#include "rad/core/log.h"
#include "rad/core/progress.h"
#include "rad/distill/distill.h"
#include "rad/distill/head_bank.h"
#include "rad/heads/discovery.h"
#include "rad/heads/head_plan.h"
#include "rad/heads/model_hash.h"
#include "rad/heads/sufficiency.h"
#include "rad/io/checkpoint.h"
#include "rad/io/hybrid_checkpoint.h"
#include "rad/parallel/process_group.h"
#include "rad/report/svg.h"
#include "rad/train/token_shards.h"
#include "text_codec.h"

namespace rad::cli {
namespace fs = std::filesystem;
using nlohmann::json;

void register_select(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "select", "Choose the kept heads by sufficiency: the smallest set whose hybrid, assembled from a head bank, "
                "solves the heads sweep's probe (greedy forward selection on the select keys)");
  static std::string teacher_dir, bank_dir, heads_dir, out;
  static SufficiencyOptions o;
  static int64_t examples = 128, batch = 16, curve_max = 0, budget_kd_steps = 0;
  // The short-KD proxy (--proxy-kd-steps > 0): each prefix of the greedy path distilled briefly.
  static DistillOptions proxy = [] {
    DistillOptions d;
    d.kd = {0, 5e-4};
    d.batch = 8;
    d.seq = 256;
    d.mix.task_share = 0;
    d.eval_every = 0;  // none: the proxy is scored on the select keys after it
    return d;
  }();
  static std::string corpus_path, tasks_list = "mqar,kv";
  cmd->add_option("TEACHER", teacher_dir, "Teacher model directory")->required();
  cmd->add_option("--bank", bank_dir, "Head bank of this teacher (`radistill bank`)")->required();
  cmd->add_option("--heads", heads_dir, "Output of `radistill heads` on this teacher (the ranking and the probe)")
      ->required();
  cmd->add_option("--out", out, "Output directory: plan.json, sufficiency.json, sufficiency.svg")->required();
  cmd->add_option("--examples", examples, "Probe examples (select keys)")->capture_default_str();
  cmd->add_option("--batch", batch, "Examples per forward pass")->capture_default_str();
  cmd->add_option("--target-ratio", o.target_ratio, "Sufficient: the probe's accuracy reaches this x the teacher's")
      ->capture_default_str();
  cmd->add_option("--candidates", o.candidates, "Heads tried at each step (the top of the necessity ranking)")
      ->capture_default_str();
  cmd->add_option("--max-heads", o.max_heads, "Largest set tried")->capture_default_str();
  cmd->add_option("--strategy", o.strategy, "ranking: walk the ablation ranking until a prefix suffices, then prune; "
                  "greedy: forward selection over the top candidates on assembled hybrids")
      ->capture_default_str()
      ->check(CLI::IsMember({"ranking", "greedy"}));
  cmd->add_option("--curve-max", curve_max, "Also score the necessity-ranked top-k for k = 0..this (default: max-heads)");
  cmd->add_option("--proxy-kd-steps", proxy.kd.steps,
                  "Confirm with a stronger proxy: distil each prefix of the greedy path this many KD steps and take "
                  "the smallest that suffices (0: assembled hybrids only)")
      ->capture_default_str();
  cmd->add_option("--budget-kd-steps", budget_kd_steps,
                  "--strategy ranking with a proxy: prune the chosen set once more with each removal trial distilled "
                  "this many KD steps (the students' budget; 0: off)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--walk-from", o.walk_from,
                  "--strategy ranking: the first prefix the walk scores (0: the first top-k whose assembled hybrid "
                  "retrieves above the no-heads level; K: top-K; the smaller prefixes' heads are still pruned)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--budget-floor", o.budget_floor,
                  "--budget-kd-steps: only trials whose short proxy reaches this x the target are distilled longer")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--corpus", corpus_path, "Distillation data of the proxy (as `distill --corpus`)");
  cmd->add_option("--proxy-kd-lr", proxy.kd.lr, "Proxy KD learning rate")->capture_default_str();
  cmd->add_option("--proxy-batch", proxy.batch, "Proxy KD sequences per step")->capture_default_str();
  cmd->add_option("--proxy-seq", proxy.seq, "Proxy KD tokens per sequence")->capture_default_str();
  cmd->add_option("--task-share", proxy.mix.task_share, "Proxy KD: fraction of task rows (training keys only)")
      ->capture_default_str();
  cmd->add_option("--tasks", tasks_list, "Proxy KD: task rows")->capture_default_str();
  cmd->add_option("--seed", proxy.seed, "Proxy KD data-order seed")->capture_default_str();
  cmd->add_option("--teacher-cache", proxy.teacher_cache,
                  "Proxy KD: directory of the teacher's hidden states per batch (as `distill --teacher-cache`)");
  cmd->callback([] {
    // Checked before any work: the second pruning distils trials from the bank like the proxy does.
    RAD_CHECK(budget_kd_steps == 0 || (proxy.kd.steps > 0 && o.strategy == "ranking"),
              "--budget-kd-steps {} needs --proxy-kd-steps > 0 and --strategy ranking (got --proxy-kd-steps {}, "
              "--strategy {})", budget_kd_steps, proxy.kd.steps, o.strategy);
    // Data-parallel when started with the torchrun environment (`radistill launch -n N -- select ...`):
    // every rank walks the same path; each proxy student is distilled data-parallel and each probe is
    // scored with its batches split between the ranks and all-reduced, so every rank takes the same
    // decisions. Rank 0 alone writes files.
    parallel::run_data_parallel(proxy.group, [] {
      const std::string heads_json_path = (fs::path(heads_dir) / "heads.json").string();
      json hj = json::parse(read_text_file(heads_json_path), nullptr, false);
      RAD_CHECK(!hj.is_discarded() && hj.contains("heads") && hj.contains("probe"),
                "{}: not a heads.json of `radistill heads` (expected \"heads\" and \"probe\")", heads_json_path);
      parallel::ProcessGroup* group = proxy.group.get();
      const bool main_rank = group->is_main();
      TextCodec codec = load_text_codec(teacher_dir);
      CausalLM teacher = io::load_causal_lm(teacher_dir, at::kFloat);
      to_compute_device(*teacher);
      const ModelConfig& c = teacher->config();
      RAD_CHECK(io::is_hybrid_dir(bank_dir), "--bank {}: not a head bank (expected the --out of `radistill bank`)", bank_dir);
      io::HybridModel bank = io::load_hybrid(bank_dir, at::kFloat);
      check_bank_matches(bank.config, c, "--bank " + bank_dir);
      check_bank_teacher(bank_dir, model_hash(teacher));
      to_compute_device(*bank.model);

      // The heads sweep's probe, on the select keys (the test keys stay for evaluation).
      const json& probe_json = hj["probe"];
      DiscoveryOptions probe;
      probe.task = probe_json.value("task", std::string("kv"));
      probe.pairs = probe_json.value("pairs", int64_t{50});
      probe.context_words = probe_json.value("context_words", int64_t{400});
      probe.seed = probe_json.value("seed", uint64_t{0});
      tasks::TaskOptions to;
      to.pairs = probe.pairs;
      to.context_words = probe.context_words;
      to.split = tasks::KeySplit::kSelect;
      std::vector<tasks::EncodedExample> examples_enc;
      for (const auto& e : tasks::make_examples(probe.task, to, examples, probe.seed))
        examples_enc.push_back(tasks::encode_example(e, codec.encode, codec.bos));
      std::vector<std::pair<int64_t, int64_t>> ranked;
      for (const auto& h : hj["heads"]) ranked.emplace_back(h.at("layer").get<int64_t>(), h.at("head").get<int64_t>());
      RAD_CHECK(static_cast<int64_t>(ranked.size()) == c.n_layer * c.n_head,
                "{}: ranks {} heads, the teacher has {}", heads_json_path, ranked.size(), c.n_layer * c.n_head);

      teacher->eval();
      const tasks::Accuracy teacher_acc = tasks::score(teacher, examples_enc, batch);
      log_info("teacher on the select keys ({}): {:.3f} [{:.3f}, {:.3f}] of {}", describe_probe(probe),
               teacher_acc.value(), teacher_acc.low(), teacher_acc.high(), teacher_acc.total);
      if (teacher_acc.value() < 0.5)
        log_warn("the teacher answers only {:.1f}% of the probe: a set that matches it says little (choose a probe the "
                 "teacher solves, e.g. `heads --task needle`)", 100 * teacher_acc.value());
      auto score_set = [&](const HeadSet& set) {
        HeadPlan plan;
        plan.kept_heads.assign(set.begin(), set.end());
        CausalLM hybrid = assemble_plan(teacher, bank.model, bank.config, plan);
        to_compute_device(*hybrid);
        return probe_score(hybrid, examples_enc, batch, group);
      };
      const int64_t curve_k = std::min<int64_t>(curve_max > 0 ? curve_max : o.max_heads, static_cast<int64_t>(ranked.size()));
      // Evaluations: the greedy path (at most candidates x max_heads + pruning) and the top-k curve.
      std::optional<Progress> progress;  // rank 0's
      if (main_rank)
        progress.emplace("select", o.candidates * o.max_heads + 3 * o.max_heads + curve_k + 1, "hybrids scored");
      int64_t done = 0;
      auto tick = [&] {
        if (progress) progress->update(++done);
      };
      // The necessity ranking's top-k, assembled without distillation (k = 0: no head): the curve beside
      // the selection's path in the report, and where the ranking walk starts (--walk-from 0).
      std::vector<tasks::Accuracy> assembled;
      for (int64_t k = 0; k <= curve_k; ++k) {
        assembled.push_back(score_set(HeadSet(ranked.begin(), ranked.begin() + k)).accuracy);
        tick();
      }
      SufficiencyResult r;
      if (proxy.kd.steps > 0) {
        RAD_CHECK(!corpus_path.empty(), "--proxy-kd-steps needs --corpus (the proxy's distillation data)");
        PretrainData data;
        data.corpus = load_corpus(corpus_path, teacher_dir, codec.encode, codec.tokenizer.vocab_size(), 0.02, false);
        data.encode = codec.encode;
        data.bos = codec.bos;
        // Each proxy student is a complete model directory (`run` reuses the chosen set's as its hybrid).
        data.write_tokenizer = [](const std::string& dir) { io::copy_tokenizer_files(teacher_dir, dir); };
        proxy.mix.tasks = split_comma_list(tasks_list);
        proxy.kd_trainable = [](const std::string& n) { return kd_trains(n, false); };
        // Each set's proxy student lives in OUT/<folder>/<its heads>: a finished one is reloaded (after
        // checking it keeps exactly these heads), an interrupted one resumes. The folder remembers the
        // proxy's settings: a re-run with other settings into the same --out must not reload students
        // distilled differently.
        auto distilled_scorer = [&](int64_t kd_steps, const std::string& folder) -> SetScorer {
          DistillOptions d = proxy;
          d.kd.steps = kd_steps;
          d.save_every = kd_steps;
          d.log_every = std::max<int64_t>(1, kd_steps);
          const fs::path dir = fs::path(out) / folder;
          const json settings = {{"bank", fs::absolute(bank_dir).lexically_normal().string()},
                                 {"kd_steps", kd_steps}, {"kd_lr", proxy.kd.lr}, {"batch", proxy.batch},
                                 {"seq", proxy.seq}, {"task_share", proxy.mix.task_share},
                                 {"tasks", tasks_list}, {"seed", proxy.seed},
                                 {"corpus", fs::absolute(corpus_path).lexically_normal().string()}};
          const fs::path settings_file = dir / "settings.json";
          if (fs::exists(settings_file)) {
            json cached = json::parse(read_text_file(settings_file.string()), nullptr, false);
            RAD_CHECK(cached == settings,
                      "{}: the proxy students in this folder were made with other settings ({}), not {}; use another "
                      "--out or remove {}",
                      settings_file.string(), cached.dump(), settings.dump(), dir.string());
          } else if (main_rank) {
            ensure_directory(dir.string());
            write_text_atomic(settings_file.string(), settings.dump(2) + "\n");
          }
          return [&, d, dir](const HeadSet& set) {
            HeadPlan plan;
            plan.kept_heads.assign(set.begin(), set.end());
            HybridConfig hc = bank.config;
            hc.plan = plan;
            DistillOptions run = d;
            run.out_dir = (dir / head_set_key(set)).string();
            CausalLM student{nullptr};
            if (fs::exists(fs::path(run.out_dir) / "model.safetensors")) {
              io::HybridModel cached = io::load_hybrid(run.out_dir, at::kFloat);
              HeadSet cached_set(cached.config.plan.kept_heads.begin(), cached.config.plan.kept_heads.end());
              RAD_CHECK(cached_set == set, "{}: a proxy student keeping {}, expected {}; remove the folder and re-run",
                        run.out_dir, head_set_key(cached_set), head_set_key(set));
              student = cached.model;
              to_compute_device(*student);
            } else {
              student = assemble_plan(teacher, bank.model, bank.config, plan);
              to_compute_device(*student);
              run.resume = fs::exists(fs::path(run.out_dir) / "checkpoints" / "latest");
              if (main_rank && !run.resume && fs::exists(run.out_dir)) fs::remove_all(run.out_dir);
              distill(teacher, student, run, data,
                      [hc](CausalLM& m, const std::string& dir) { io::save_hybrid(m, hc, dir); });
            }
            student->eval();
            return probe_score(student, examples_enc, batch, group);
          };
        };
        const SetScorer distilled_score = distilled_scorer(proxy.kd.steps, "proxy");
        auto distilled_for = [&](int64_t steps) {
          return fmt::format("distilled {} KD steps of {} x {} tokens", steps, proxy.batch, proxy.seq);
        };
        const std::string what = distilled_for(proxy.kd.steps);
        if (o.strategy == "ranking") {
          r = walk_ranking_and_prune(ranked, teacher_acc.value(), distilled_score, o, tick, assembled);
          r.proxy = "each set " + what;
          if (budget_kd_steps > 0) {
            const std::string budget_what = distilled_for(budget_kd_steps);
            r = prune_at_budget(r, distilled_score, distilled_scorer(budget_kd_steps, "proxy_budget"),
                                "each removal trial " + budget_what, o, tick);
            r.proxy += fmt::format("; the choice pruned again with each trial {}", budget_what);
          }
        } else {
          r = select_sufficient_set(ranked, teacher_acc.value(), score_set, o, tick);
          r = confirm_by_proxy(r, distilled_score, "each prefix of the greedy path " + what, o, tick);
        }
      } else if (o.strategy == "ranking") {
        r = walk_ranking_and_prune(ranked, teacher_acc.value(), score_set, o, tick, assembled);
      } else {
        r = select_sufficient_set(ranked, teacher_acc.value(), score_set, o, tick);
      }
      if (o.strategy == "ranking") r.empty_accuracy = assembled[0];  // (greedy scored it itself)
      json top_k = json::array();
      std::vector<std::pair<double, double>> top_points, greedy_points;
      for (int64_t k = 0; k <= curve_k; ++k) {
        const tasks::Accuracy& a = assembled[static_cast<size_t>(k)];
        top_k.push_back({{"k", k}, {"accuracy", a.value()}, {"low", a.low()}, {"high", a.high()}, {"n", a.total}});
        top_points.emplace_back(k, a.value());
      }
      if (progress) progress->finish();
      if (proxy.kd.steps == 0) greedy_points.emplace_back(0, r.empty_accuracy.value());
      // Pruning as its own series: it starts at the sufficient set the additions reached and walks left.
      std::vector<std::pair<double, double>> pruned_points;
      for (const auto& s : r.path) {
        // (Heads added before the walk's first scored prefix are on the assembled curve already.)
        if (s.action == "add" && s.judged_by != "assembled")
          greedy_points.emplace_back(static_cast<double>(s.set.size()), s.accuracy.value());
        if (s.action == "drop") {
          if (pruned_points.empty() && !greedy_points.empty()) pruned_points.push_back(greedy_points.back());
          pruned_points.emplace_back(static_cast<double>(s.set.size()), s.accuracy.value());
        }
      }
      for (const auto& s : r.proxy_path) greedy_points.emplace_back(static_cast<double>(s.set.size()), s.accuracy.value());
      // The second pruning's accepted drops, at the students' budget.
      std::vector<std::pair<double, double>> budget_points;
      for (const auto& s : r.budget_path)
        if (s.action == "drop") budget_points.emplace_back(static_cast<double>(s.set.size()), s.accuracy.value());

      if (!main_rank) return;  // rank 0 writes the results
      HeadPlan plan;
      plan.kept_heads.assign(r.chosen.begin(), r.chosen.end());
      plan.selector = {{"kind", "sufficiency"}, {"options", o.to_json()}, {"sufficient", r.sufficient}};
      ensure_directory(out);
      plan.save((fs::path(out) / "plan.json").string(), c);
      json j = r.to_json();
      j["selection_probe"] = {{"task", probe.task}, {"description", describe_probe(probe)}, {"pairs", probe.pairs},
                    {"context_words", probe.context_words}, {"examples", examples}, {"seed", probe.seed},
                    {"key_split", "select"}};
      j["chosen"] = j["kept_heads"];
      j["teacher"] = {{"accuracy", teacher_acc.value()}, {"low", teacher_acc.low()}, {"high", teacher_acc.high()},
                      {"n", teacher_acc.total}};
      j["options"] = o.to_json();
      j["top_k_curve"] = top_k;
      j["bank"] = fs::absolute(bank_dir).lexically_normal().string();
      j["scored"] = proxy.kd.steps > 0 ? r.proxy : std::string("assembled from the bank, no distillation");
      write_text_atomic((fs::path(out) / "sufficiency.json").string(), j.dump(2) + "\n");
      std::vector<svg::Series> selection_series = {
          {proxy.kd.steps > 0 ? fmt::format("selection path, after {} KD steps", proxy.kd.steps)
                              : std::string("selection path, assembled"),
           "#c0392b", greedy_points, {}},
          {"ablation top-k, assembled (no KD)", "#2c3e50", top_points, {}},
          svg::reference_line("teacher", "#7f8c8d", teacher_acc.value())};
      if (!pruned_points.empty()) selection_series.push_back({"pruning (heads dropped)", "#27ae60", pruned_points, {}});
      if (!budget_points.empty())
        selection_series.push_back({fmt::format("pruning after {} KD steps", budget_kd_steps), "#8e44ad", budget_points, {}});
      write_text_atomic((fs::path(out) / "sufficiency.svg").string(),
                        svg::line_chart(selection_series,
                                        fmt::format("Kept sets from the head bank, {}, select keys", describe_probe(probe)),
                                        "heads kept (k)", "probe accuracy", 0, 1));
      std::string kept;
      for (const auto& [l, h] : plan.kept_heads) kept += fmt::format("{}L{}H{}", kept.empty() ? "" : ", ", l, h);
      log_info("{} {} heads ({}): probe {:.3f} [{:.3f}, {:.3f}] vs the teacher's {:.3f}; {} hybrids scored; wrote {}",
               r.sufficient ? "sufficient set of" : "no sufficient set within the limit; chose", plan.size(), kept,
               r.chosen_accuracy.value(), r.chosen_accuracy.low(), r.chosen_accuracy.high(), teacher_acc.value(),
               r.evaluations + curve_k, out);
      std::printf("%s\n", json({{"k", plan.size()}, {"kept_heads", plan.to_json(c)["kept_heads"]},
                                {"sufficient", r.sufficient}, {"probe_accuracy", r.chosen_accuracy.value()},
                                {"teacher_accuracy", teacher_acc.value()}, {"out", out}})
                              .dump()
                              .c_str());
    });
  });
}

}  // namespace rad::cli
