// `radistill run`: the whole pipeline (docs/DESIGN.md section 1) as a sequence of stages, each one of the
// CLI's own subcommands run as a child process of this binary, so a stage does exactly what the
// user would get by typing it (same options, progress bars, atomic outputs and resume rules):
//   heads -> plans -> convert/distill per model -> shrink + short distill -> eval -> report.
// OUT/run.json records the settings; a finished stage leaves OUT/stages/NAME.done. Re-running the
// same command skips finished stages and resumes an interrupted distillation from its checkpoint;
// re-running with different settings over the same OUT is refused (a different run's files).
#include <limits>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <random>

#include "commands.h"
#include "rad/core/atomic_file.h"
#include "rad/core/error.h"
#include "rad/core/log.h"
#include "rad/core/progress.h"
#include "rad/core/torch_setup.h"
#include "rad/heads/ablation.h"
#include "rad/heads/baselines.h"
#include "rad/heads/head_plan.h"
#include "rad/heads/sufficiency.h"
#include "rad/io/hf_config.h"
#include "rad/io/hybrid_checkpoint.h"
#include "rad/model/hybrid_config.h"
#include "rad/report/run_report.h"
#include "rad/train/token_shards.h"
#include "ssm_flags.h"

namespace rad::cli {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

struct RunOptions {
  std::string teacher, corpus, out;
  int64_t pairs = 50, head_examples = 128;
  // "auto" (the default): the kept set by sufficiency (`radistill select` on the head bank); or K
  // heads of the necessity ranking; --fraction F keeps the top F of heads instead.
  std::string budget = "auto";
  double fraction = 0.0;
  SsmOptions ssm = recommended_ssm_options();  // the SSM heads of every student (--d-state, --conv, ...; `radistill bank`'s flags)
  DecayInit decay;
  int64_t shrink_factor = 8;
  // The head bank: every head's replacement aligned once (bank_steps), then each student is
  // assembled from it and gets align_steps of layer alignment (0 by default) and kd_steps of KD.
  int64_t bank_steps = 300;
  double bank_lr = 1e-3;
  SufficiencyOptions sufficiency;
  // Sets are judged after this many KD steps each (a proxy of the distilled result; 0: assembled).
  int64_t select_kd_steps = 100;
  // The chosen set is pruned once more with each removal trial distilled this many KD steps; -1: as
  // many as the students get (--kd-steps), 0: off. The 100-step proxy is noisy at the bar.
  int64_t select_budget_kd_steps = -1;
  int64_t align_steps = 0, kd_steps = 600, shrink_align_steps = 100, shrink_kd_steps = 200, batch = 8, seq = 256;
  double align_lr = 1e-3, kd_lr = 5e-4;
  bool fp32 = false, bf16 = false, quick = false, dstate_sweep = false;
  int64_t random_draws = 5;
  std::vector<int64_t> heads_sweep;  // extra students keeping the top k heads (empty: none)
  uint64_t seed = 0;
  int64_t eval_examples = 100, save_every = 100;
  std::vector<int64_t> eval_kv_pairs = {10, 25, 50, 100};
  std::vector<int64_t> eval_needle_words = {200, 600};
  double task_share = 0.0;  // distillation data: the corpus only by default (the paper distils on text)
  int nproc = 1;  // data-parallel processes for the head sweep and the distillations (radistill launch)
  // The probe that scores heads and reports "probe accuracy": the paper's KV lookup, or the needle
  // for a teacher that cannot do the KV probe (SmolLM2-135M: bench/RESULTS.md).
  std::string probe_task = "kv";
  int64_t context_words = 40;  // needle probe: filler words
  std::string heads_dir;       // an earlier `radistill heads` output to use instead of a new sweep
  bool layerwise = true;       // the layer-wise baselines (25% and 50% of layers)
  bool layerwise_same_cache = false;  // also the layer-wise hybrid whose KV cache is nearest the hybrid's
  // An existing head bank (`radistill bank`'s output or one of its snapshots) instead of the bank stage.
  std::string bank;
  std::vector<int64_t> eval_multi_needle_words;  // multi-needle probe lengths in the evaluation (none by default)
  int64_t eval_needles = 4;                       // facts per multi-needle example
  // Recompute each student layer in backward (less memory, same result): not one of the settings a
  // resumed run must repeat.
  bool activation_checkpointing = false;
};

std::string default_teacher() {
  // Next to the binary's source tree (build/radistill -> models/default-teacher), else the cwd's.
  std::error_code ec;
  fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    fs::path candidate = exe.parent_path().parent_path() / "models" / "default-teacher";
    if (fs::exists(candidate / "config.json")) return candidate.string();
  }
  return "models/default-teacher";
}

std::string self_exe() {
  std::error_code ec;
  fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  RAD_CHECK(!ec, "cannot find this program's path (/proc/self/exe): {}", ec.message());
  return exe.string();
}

// Runs `radistill [global options] ARGS...` as a child with this process's stdio; returns its exit
// status. The child dies with this process (PR_SET_PDEATHSIG), so a killed run leaves no stage
// running on in the background to race the resumed one.
int run_child(const std::vector<std::string>& args) {
  std::vector<std::string> full = {self_exe()};
  const GlobalOptions& g = global_options();
  if (g.threads > 0) full.insert(full.end(), {"--threads", std::to_string(g.threads)});
  if (g.device != "cpu") full.insert(full.end(), {"--device", g.device});
  if (g.quiet) full.push_back("--quiet");
  if (g.verbose) full.push_back("--verbose");
  full.insert(full.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : full) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t parent = getpid();
  pid_t pid = fork();
  RAD_CHECK(pid >= 0, "cannot start {}: {}", full[0], std::strerror(errno));
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);  // the parent died before prctl
    execv(full[0].c_str(), argv.data());
    _exit(127);
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) RAD_CHECK(errno == EINTR, "waitpid failed: {}", std::strerror(errno));
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  return 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

std::string join(const std::vector<std::string>& args) {
  std::string s;
  for (const auto& a : args) s += (s.empty() ? "" : " ") + a;
  return s;
}

class Pipeline {
 public:
  explicit Pipeline(const RunOptions& o) : o_(o), out_(o.out) {}

  // One student: converted from the teacher with a plan (plan_file), or shrunk from another
  // student's distilled model (shrink_from), then distilled with the run's budget.
  struct Student {
    std::string name, kind, plan_file, shrink_from;
    int64_t d_state = 0;
    bool short_budget = false;  // the shrink budget (alignment + KD after shrinking)
  };

  void run() {
    check_settings();
    ModelConfig config = io::load_hf_config((fs::path(o_.teacher) / "config.json").string());
    int64_t d_state = resolve_d_state(config, o_.ssm.d_state);
    int64_t small_state = shrunk_d_state(d_state, o_.shrink_factor);
    std::string plans = path("plans");
    std::vector<Student> students = {{"hybrid", "hybrid", plans + "/hybrid.json", "", d_state},
                                     {"shrunk", "shrunk", "", "hybrid", small_state, true},
                                     {"pure_ssm", "pure_ssm", plans + "/pure_ssm.json", "", d_state}};
    if (!o_.quick) {
      for (int64_t d = 1; d <= o_.random_draws; ++d)
        students.push_back({fmt::format("random_heads_{}", d), "random_heads",
                            plans + fmt::format("/random_heads_{}.json", d), "", d_state});
      if (o_.layerwise) {
        students.push_back({"layerwise_25", "layerwise_25", plans + "/layerwise_25.json", "", d_state});
        students.push_back({"layerwise_50", "layerwise_50", plans + "/layerwise_50.json", "", d_state});
      }
      if (o_.layerwise_same_cache)
        students.push_back({"layerwise_cache", "layerwise_cache", plans + "/layerwise_cache.json", "", d_state});
    }
    for (int64_t k : o_.heads_sweep)
      students.push_back({fmt::format("top_{}", k), "heads_sweep", plans + fmt::format("/top_{}.json", k), "", d_state});
    if (o_.dstate_sweep)
      for (int64_t f : {2, 4})
        if (shrunk_d_state(d_state, f) != d_state && shrunk_d_state(d_state, f) != small_state)
          students.push_back({fmt::format("dstate_{}", shrunk_d_state(d_state, f)), "dstate_sweep", "", "hybrid",
                              shrunk_d_state(d_state, f), true});
    total_ = 1 + 1 + (auto_budget() ? 1 : 0) + 1 + 2 * static_cast<int64_t>(students.size()) + 1 + 1;
    Progress progress("run", total_, "stages");

    std::string heads_dir = o_.heads_dir.empty() ? path("heads") : o_.heads_dir;
    if (o_.heads_dir.empty()) {
      HeadSelector sel = heads_selector();
      std::vector<std::string> heads_args = {"heads", o_.teacher, "--out", heads_dir, "--pairs", std::to_string(o_.pairs),
                                             "--examples", std::to_string(o_.head_examples), "--seed",
                                             std::to_string(o_.seed), sel.budget > 0 ? "--budget" : "--fraction",
                                             sel.budget > 0 ? std::to_string(sel.budget) : fmt::format("{}", sel.fraction)};
      if (o_.probe_task != "kv")
        heads_args.insert(heads_args.end(), {"--task", o_.probe_task, "--context-words", std::to_string(o_.context_words)});
      stage("heads", progress, data_parallel(heads_args));
    } else {
      check_heads_dir(config);
      log_info("[run] heads: the sweep in {} (not run again)", heads_dir);
      progress.update(++finished_);
    }

    // The head bank: every head's recurrent replacement, aligned once; every student starts from it.
    const std::string bank_dir = this->bank_dir();
    if (!o_.bank.empty()) {
      log_info("[run] bank: the head bank {} (not aligned again)", bank_dir);
      progress.update(++finished_);
    } else {
      std::vector<std::string> bank_args = {"bank", o_.teacher, "--corpus", o_.corpus, "--out", bank_dir, "--steps",
                                            std::to_string(o_.bank_steps), "--lr", fmt::format("{}", o_.bank_lr),
                                            "--batch", std::to_string(o_.batch), "--seq", std::to_string(o_.seq),
                                            "--seed", std::to_string(o_.seed), "--task-share",
                                            fmt::format("{}", o_.task_share), "--save-every",
                                            std::to_string(o_.save_every)};
      for (const auto& a : ssm_flag_args(o_.ssm, o_.decay)) bank_args.push_back(a);
      if (use_bf16()) bank_args.push_back("--bf16");
      if (!done("bank") && fs::exists(fs::path(bank_dir) / "checkpoints" / "latest")) bank_args.push_back("--resume");
      stage("bank", progress, data_parallel(bank_args));
    }
    // The kept set: by sufficiency on the bank (--budget auto), else the necessity ranking's top.
    std::string plan_path = heads_dir + "/plan.json";
    if (auto_budget()) {
      const SufficiencyOptions& so = o_.sufficiency;
      std::vector<std::string> select_args = {
          "select", o_.teacher, "--bank", bank_dir, "--heads", heads_dir, "--out", path("select"), "--examples",
          std::to_string(o_.head_examples), "--target-ratio", fmt::format("{}", so.target_ratio), "--candidates",
          std::to_string(so.candidates), "--max-heads", std::to_string(so.max_heads), "--strategy", so.strategy,
          "--proxy-kd-steps", std::to_string(o_.select_kd_steps), "--corpus", o_.corpus, "--proxy-kd-lr",
          fmt::format("{}", o_.kd_lr), "--proxy-batch", std::to_string(o_.batch), "--proxy-seq",
          std::to_string(o_.seq), "--task-share", fmt::format("{}", o_.task_share), "--seed",
          std::to_string(o_.seed), "--budget-kd-steps", std::to_string(select_budget_kd_steps()), "--walk-from",
          std::to_string(so.walk_from)};
      if (!use_bf16()) select_args.insert(select_args.end(), {"--teacher-cache", teacher_cache_dir()});
      stage("select", progress, data_parallel(select_args));
      plan_path = path("select/plan.json");
    }
    HeadPlan plan = HeadPlan::load(plan_path, config);

    // Plans: discovered, none, the baselines' (same budget at random, whole layers), the sweep's.
    if (!done("plans")) {
      ensure_directory(plans);
      plan.save(plans + "/hybrid.json", config);
      HeadPlan none;
      none.selector = {{"kind", "none"}};
      none.save(plans + "/pure_ssm.json", config);
      for (int64_t d = 1; d <= o_.random_draws; ++d)
        random_heads_plan(config, plan.size(), o_.seed + d).save(plans + fmt::format("/random_heads_{}.json", d), config);
      layerwise_plan(config, 0.25).save(plans + "/layerwise_25.json", config);
      layerwise_plan(config, 0.5).save(plans + "/layerwise_50.json", config);
      layerwise_plan_same_cache(config, plan).save(plans + "/layerwise_cache.json", config);
      json ranked = json::parse(read_text_file(heads_dir + "/heads.json"))["heads"];
      for (int64_t k : o_.heads_sweep) {
        HeadPlan top;
        for (int64_t i = 0; i < k && i < static_cast<int64_t>(ranked.size()); ++i)
          top.kept_heads.push_back({ranked[i]["layer"].get<int64_t>(), ranked[i]["head"].get<int64_t>()});
        std::sort(top.kept_heads.begin(), top.kept_heads.end());
        top.selector = {{"kind", "budget"}, {"budget", k}};
        top.save(plans + fmt::format("/top_{}.json", k), config);
      }
      mark("plans", "plans written");
    }
    progress.update(++finished_);

    for (const auto& s : students) {
      if (s.shrink_from.empty()) {
        stage("convert_" + s.name, progress,
              {"convert", o_.teacher, "--plan", s.plan_file, "--bank", bank_dir, "--out", path("init/" + s.name)});
      } else {
        stage("shrink_" + s.name, progress,
              {"shrink", "--model", path("models/" + s.shrink_from), "--d-state", std::to_string(s.d_state), "--out",
               path("init/" + s.name)});
      }
      // The selection's budget pruning distilled the chosen set exactly as the hybrid would be (same
      // bank, rows, steps and learning rate): that student is the hybrid, not distilled twice.
      if (s.name == "hybrid" && reuse_budget_student(plan, progress)) continue;
      // Shrinking repeats alignment and KD briefly (docs/DESIGN.md section 5.4); every other student gets
      // the same full budget.
      distill_stage("distill_" + s.name, progress, path("init/" + s.name), path("models/" + s.name),
                    s.short_budget ? o_.shrink_align_steps : o_.align_steps,
                    s.short_budget ? o_.shrink_kd_steps : o_.kd_steps);
    }

    std::vector<std::string> eval_args = {"eval", o_.teacher};
    for (const auto& s : students) eval_args.push_back(path("models/" + s.name));
    std::string kv;
    for (int64_t p : o_.eval_kv_pairs) kv += (kv.empty() ? "" : ",") + std::to_string(p);
    std::string needle;
    for (int64_t w : o_.eval_needle_words) needle += (needle.empty() ? "" : ",") + std::to_string(w);
    eval_args.insert(eval_args.end(), {"--out", path("eval"), "--corpus", o_.corpus, "--examples",
                                       std::to_string(o_.eval_examples), "--kv-pairs", kv, "--needle-words", needle,
                                       "--seed", std::to_string(o_.seed)});
    if (!o_.eval_multi_needle_words.empty()) {
      std::string multi;
      for (int64_t w : o_.eval_multi_needle_words) multi += (multi.empty() ? "" : ",") + std::to_string(w);
      eval_args.insert(eval_args.end(), {"--multi-needle-words", multi, "--needles", std::to_string(o_.eval_needles)});
    }
    stage("eval", progress, data_parallel(eval_args));

    // Report (in this process).
    RunReportInput in;
    in.eval = json::parse(read_text_file(path("eval/eval.json")));
    in.heads = json::parse(read_text_file(heads_dir + "/heads.json"));
    in.settings = extended_settings();
    if (fs::exists(bank_dir + "/bank.json")) in.bank = json::parse(read_text_file(bank_dir + "/bank.json"));
    if (auto_budget()) {
      in.sufficiency = json::parse(read_text_file(path("select/sufficiency.json")));
      in.sufficiency_svg_rel = "select/sufficiency.svg";
    }
    json kept = json::array();
    for (const auto& [l, h] : plan.kept_heads) kept.push_back({l, h});
    in.settings["kept_heads"] = kept;
    in.settings["d_state_effective"] = d_state;
    in.settings["d_state_shrunk"] = small_state;
    in.settings["nproc"] = o_.nproc;
    in.probe_pairs = in.heads.value("probe", json::object()).value("pairs", o_.pairs);
    in.probe_task = o_.probe_task;
    in.probe_context_words = o_.context_words;
    if (o_.probe_task == "kv" &&
        std::find(o_.eval_kv_pairs.begin(), o_.eval_kv_pairs.end(), in.probe_pairs) == o_.eval_kv_pairs.end())
      log_warn("the head probe's {} pairs are not among --eval-kv-pairs; report.json's probe_accuracy will be null",
               in.probe_pairs);
    in.kinds[fs::path(o_.teacher).filename().string()] = "teacher";
    for (const auto& s : students) in.kinds[s.name] = s.kind;
    in.settings["trimmed"] = o_.quick        ? json("--quick: random-heads and layer-wise baselines not run")
                             : !o_.layerwise ? json("--no-layerwise: layer-wise baselines not run")
                                             : json(nullptr);
    fs::path rel_heads = fs::relative(fs::path(heads_dir) / "heads.svg", out_);
    write_run_report(in, out_, rel_heads.string());
    mark("report", "report written");
    progress.update(++finished_);
    progress.finish();
    log_info("report: {}/report.md, {}/report.json", out_, out_);
  }

 private:
  std::string path(const std::string& rel) const { return (fs::path(out_) / rel).string(); }
  std::string bank_dir() const { return o_.bank.empty() ? path("bank") : o_.bank; }
  std::string marker(const std::string& name) const { return path("stages/" + name + ".done"); }
  bool done(const std::string& name) const { return fs::exists(marker(name)); }
  void mark(const std::string& name, const std::string& what) {
    ensure_directory(path("stages"));
    write_text_atomic(marker(name), what + "\n");
  }

  void stage(const std::string& name, Progress& progress, const std::vector<std::string>& args) {
    if (done(name)) {
      log_info("[run] {}: done earlier, skipped", name);
    } else {
      log_info("[run] stage {} of {}: {}: radistill {}", finished_ + 1, total_, name, join(args));
      auto t0 = std::chrono::steady_clock::now();
      int rc = run_child(args);
      RAD_CHECK(rc == 0, "stage {} failed (exit status {}); fix the cause and re-run the same command to resume", name,
                rc);
      double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      mark(name, fmt::format("radistill {}\nseconds {:.1f}", join(args), s));
    }
    progress.update(++finished_);
  }

  void distill_stage(const std::string& name, Progress& progress, const std::string& student, const std::string& out,
                     int64_t align, int64_t kd) {
    std::vector<std::string> args = {"distill", "--teacher", o_.teacher, "--student", student, "--corpus", o_.corpus,
                                     "--out", out, "--align-steps", std::to_string(align), "--kd-steps",
                                     std::to_string(kd), "--align-lr", fmt::format("{}", o_.align_lr), "--kd-lr",
                                     fmt::format("{}", o_.kd_lr), "--batch", std::to_string(o_.batch), "--seq",
                                     std::to_string(o_.seq), "--seed", std::to_string(o_.seed), "--task-share",
                                     fmt::format("{}", o_.task_share), "--probe-pairs", "20", "--probe-examples", "50",
                                     "--eval-every", std::to_string(std::max<int64_t>(50, (align + kd) / 4)),
                                     "--save-every", std::to_string(o_.save_every)};
    if (use_bf16()) args.push_back("--bf16");
    else args.insert(args.end(), {"--teacher-cache", teacher_cache_dir()});
    if (o_.activation_checkpointing) args.push_back("--activation-checkpointing");
    // An interrupted distillation continues from its latest checkpoint.
    if (!done(name) && fs::exists(fs::path(out) / "checkpoints" / "latest")) args.push_back("--resume");
    stage(name, progress, data_parallel(args));
  }

  // With --nproc N > 1, the stage runs as N data-parallel copies under `radistill launch`. Their
  // results equal one process's up to float32 summation order (the head ranking exactly), and their
  // checkpoints resume on any N, so --nproc is not one of the settings a resumed run must repeat.
  std::vector<std::string> data_parallel(std::vector<std::string> args) const {
    if (o_.nproc <= 1) return args;
    args.insert(args.begin(), {"launch", "-n", std::to_string(o_.nproc), "--"});
    return args;
  }

  // Copies select/proxy_budget/<the chosen set> to models/hybrid when that student was distilled
  // with the hybrid's settings (the budget pruning's settings.json against this run's); false when
  // there is none or its settings differ (then the hybrid is distilled as every other student).
  bool reuse_budget_student(const HeadPlan& plan, Progress& progress) {
    const std::string name = "distill_hybrid";
    if (done(name)) return false;  // distilled (or reused) earlier: stage() reports it skipped
    if (!auto_budget() || select_budget_kd_steps() != o_.kd_steps || o_.align_steps != 0) return false;
    const fs::path folder = path("select/proxy_budget");
    const fs::path dir = folder / head_set_key(HeadSet(plan.kept_heads.begin(), plan.kept_heads.end()));
    if (!fs::exists(dir / "model.safetensors") || !fs::exists(folder / "settings.json")) return false;
    const json made = json::parse(read_text_file((folder / "settings.json").string()), nullptr, false);
    auto absolute = [](const std::string& p) { return fs::absolute(p).lexically_normal().string(); };
    const json wanted = {{"kd_steps", o_.kd_steps},     {"kd_lr", o_.kd_lr},   {"batch", o_.batch},
                         {"seq", o_.seq},               {"seed", o_.seed},     {"task_share", o_.task_share},
                         {"bank", absolute(bank_dir())}, {"corpus", absolute(o_.corpus)}};
    for (const auto& [key, value] : wanted.items())
      if (!made.is_object() || !made.contains(key) || made[key] != value) return false;
    const std::string out = path("models/hybrid");
    log_info("[run] stage {} of {}: {}: the selection's budget student {} is this hybrid (distilled {} KD steps "
             "with the students' settings); copied to {}",
             finished_ + 1, total_, name, dir.string(), o_.kd_steps, out);
    const fs::path tmp = out + ".partial";
    fs::remove_all(tmp);
    fs::create_directories(tmp.parent_path());
    fs::copy(dir, tmp, fs::copy_options::recursive);
    fs::remove_all(tmp / "checkpoints");  // the proxy's training state; the model files stay
    io::copy_tokenizer_files(o_.teacher, tmp.string());  // (a select of an earlier version wrote none)
    fs::remove_all(out);
    fs::rename(tmp, out);
    mark(name, fmt::format("reused {} (the selection's budget student of this plan)", dir.string()));
    progress.update(++finished_);
    return true;
  }

  // The teacher's hidden states per KD batch, computed by the first distillation on a batch's rows
  // and read by every later one (the selection's proxies and the students share their rows).
  std::string teacher_cache_dir() const { return path("teacher_cache"); }

  // float32 unless --bf16, and bf16 autocast only where the CPU has native bf16 matmuls: elsewhere
  // libtorch's fallback kernel made distillation ~19x slower than float32 (core/torch_setup.h). Even
  // with native bf16, float32 is the default: bf16 tensors bypass the fused float32 training
  // kernels, and measured on an avx512_bf16 CPU float32 distilled 4-37% faster (bench/RESULTS.md).
  bool use_bf16() const { return o_.bf16 && cpu_has_native_bf16(); }

  // --budget auto (the default, unless --fraction is given): the kept set by sufficiency.
  bool auto_budget() const { return o_.budget == "auto" && o_.fraction <= 0; }
  // Only with a KD proxy: the budget pruning distils trials, an assembled-only selection does not.
  int64_t select_budget_kd_steps() const {
    if (o_.select_kd_steps <= 0 || o_.sufficiency.strategy != "ranking") return 0;
    return o_.select_budget_kd_steps < 0 ? o_.kd_steps : o_.select_budget_kd_steps;
  }

  // What the heads stage's own plan keeps: --budget K or --fraction F as given; under auto, the
  // default 3% (its plan is then only the sweep's causal check; the run's plan comes from `select`).
  HeadSelector heads_selector() const {
    HeadSelector sel;
    if (o_.fraction > 0)
      sel.fraction = o_.fraction;
    else if (o_.budget != "auto")
      sel.budget = std::stoll(o_.budget);
    else
      sel.fraction = 0.03;
    return sel;
  }

  json settings_json() const {
    return {{"teacher", fs::absolute(o_.teacher).lexically_normal().string()},
            {"corpus", fs::absolute(o_.corpus).lexically_normal().string()},
            {"pairs", o_.pairs},
            {"head_examples", o_.head_examples},
            {"budget", o_.budget},
            {"fraction", o_.fraction},
            {"d_state", o_.ssm.d_state},
            {"ssm", ssm_flag_args(o_.ssm, o_.decay)},
            {"bank_steps", o_.bank_steps},
            {"bank_lr", o_.bank_lr},
            {"sufficiency", o_.sufficiency.to_json()},
            {"select_kd_steps", o_.select_kd_steps},
            {"select_budget_kd_steps", select_budget_kd_steps()},
            {"shrink_factor", o_.shrink_factor},
            {"align_steps", o_.align_steps},
            {"kd_steps", o_.kd_steps},
            {"shrink_align_steps", o_.shrink_align_steps},
            {"shrink_kd_steps", o_.shrink_kd_steps},
            {"align_lr", o_.align_lr},
            {"kd_lr", o_.kd_lr},
            {"batch", o_.batch},
            {"seq", o_.seq},
            {"bf16", o_.bf16},
            {"bf16_used", use_bf16()},
            {"quick", o_.quick},
            {"random_draws", o_.random_draws},
            {"heads_sweep", o_.heads_sweep},
            {"dstate_sweep", o_.dstate_sweep},
            {"seed", o_.seed},
            {"eval_examples", o_.eval_examples},
            {"eval_kv_pairs", o_.eval_kv_pairs},
            {"eval_needle_words", o_.eval_needle_words},
            {"task_share", o_.task_share}};
  }

  // Settings added after runs were already on disk: recorded only when not at their defaults, so an
  // older run.json still resumes.
  json extended_settings() const {
    json s = settings_json();
    if (o_.probe_task != "kv") {
      s["probe_task"] = o_.probe_task;
      s["context_words"] = o_.context_words;
    }
    if (!o_.heads_dir.empty()) s["heads_dir"] = fs::absolute(o_.heads_dir).lexically_normal().string();
    if (!o_.layerwise) s["layerwise"] = false;
    if (o_.layerwise_same_cache) s["layerwise_same_cache"] = true;
    if (!o_.bank.empty()) s["bank"] = fs::absolute(o_.bank).lexically_normal().string();
    if (!o_.eval_multi_needle_words.empty()) {
      s["eval_multi_needle_words"] = o_.eval_multi_needle_words;
      s["eval_needles"] = o_.eval_needles;
    }
    return s;
  }

  // An earlier `radistill heads` output used as this run's sweep must be of this teacher, with this
  // run's probe and head selection; otherwise its plan is not the one the settings describe.
  void check_heads_dir(const ModelConfig& config) const {
    std::string heads_json = (fs::path(o_.heads_dir) / "heads.json").string();
    json h = json::parse(read_text_file(heads_json), nullptr, false);
    RAD_CHECK(!h.is_discarded() && h.contains("probe") && h.contains("selector"),
              "{}: not a heads.json of `radistill heads` (expected JSON with \"probe\" and \"selector\")", heads_json);
    std::string task = h["probe"].value("task", std::string("kv"));
    RAD_CHECK(task == o_.probe_task, "{}: its probe task is {}, this run's --probe-task is {}", heads_json, task,
              o_.probe_task);
    if (task == "kv")
      RAD_CHECK(h["probe"].value("pairs", int64_t{0}) == o_.pairs, "{}: its probe has {} pairs, this run's --pairs is {}",
                heads_json, h["probe"].value("pairs", int64_t{0}), o_.pairs);
    else if (h["probe"].contains("context_words"))
      RAD_CHECK(h["probe"]["context_words"].get<int64_t>() == o_.context_words,
                "{}: its needle probe has {} filler words, this run's --context-words is {}", heads_json,
                h["probe"]["context_words"].get<int64_t>(), o_.context_words);
    // Under --budget auto the run's plan comes from `select`; the sweep's own kept set only served
    // its causal check, so any selection of it will do.
    HeadSelector mine = heads_selector();
    RAD_CHECK(auto_budget() || h["selector"] == mine.to_json(),
              "{}: its heads were selected by {}, this run's selection is {} (pass the same --budget or --fraction)",
              heads_json, h["selector"].dump(), mine.to_json().dump());
    // The plan is validated against the teacher's shape (layers, heads, model hash when stated).
    HeadPlan::load((fs::path(o_.heads_dir) / "plan.json").string(), config);
  }

  // OUT/run.json holds the settings of the run that owns OUT. The same settings resume it; other
  // settings are refused before any work, naming the first field that differs.
  void check_settings() {
    RAD_CHECK(fs::exists(fs::path(o_.teacher) / "config.json"), "teacher {}: no config.json (expected a Hugging Face "
              "model directory; the shipped one is models/default-teacher)", o_.teacher);
    RAD_CHECK(corpus_is_token_dir(o_.corpus) || fs::is_regular_file(o_.corpus),
              "corpus {}: no such file or token directory (expected UTF-8 text, e.g. the KJV from "
              "scripts/get_corpus.sh, or the --out of `radistill tokenize-corpus`)", o_.corpus);
    RAD_CHECK(o_.nproc >= 1, "--nproc must be >= 1, got {}", o_.nproc);
    if (o_.bf16 && !cpu_has_native_bf16())
      log_warn("--bf16: this CPU has no native bf16 matmuls (radistill env: native_bf16); distilling in float32");
    RAD_CHECK(o_.probe_task == "kv" || o_.probe_task == "needle",
              "--probe-task {}: expected kv or needle (the tasks the evaluation reports a probe accuracy for)",
              o_.probe_task);
    RAD_CHECK(o_.context_words >= 1, "--context-words must be >= 1, got {}", o_.context_words);
    RAD_CHECK(o_.heads_dir.empty() || fs::is_regular_file(fs::path(o_.heads_dir) / "heads.json"),
              "--heads-dir {}: no heads.json (expected the --out directory of `radistill heads`)", o_.heads_dir);
    RAD_CHECK(o_.bank.empty() || (fs::is_regular_file(fs::path(o_.bank) / "config.json") &&
                                  fs::is_regular_file(fs::path(o_.bank) / "model.safetensors")),
              "--bank {}: no config.json and model.safetensors (expected the --out of `radistill bank` or one of its "
              "snapshots, OUT/snapshots/tokens-N)", o_.bank);
    RAD_CHECK(o_.batch % o_.nproc == 0,
              "--batch {} is not divisible by --nproc {}: every process takes an equal share of the global batch",
              o_.batch, o_.nproc);
    json mine = extended_settings();
    std::string run_json = path("run.json");
    if (fs::exists(run_json)) {
      json theirs = json::parse(read_text_file(run_json), nullptr, false);
      RAD_CHECK(!theirs.is_discarded(), "{}: not valid JSON; remove it or choose another --out", run_json);
      for (auto it = mine.begin(); it != mine.end(); ++it)
        RAD_CHECK(theirs.contains(it.key()) && theirs[it.key()] == it.value(),
                  "{} holds another run (its {} is {}, this run's is {}); use another --out or the same settings",
                  out_, it.key(), theirs.value(it.key(), json(nullptr)).dump(), it.value().dump());
      log_info("[run] resuming the run in {}", out_);
    } else {
      ensure_directory(out_);
      for (const auto& entry : fs::directory_iterator(out_))
        RAD_CHECK(false, "{} is not empty and has no run.json ({} is there); use an empty or new --out", out_,
                  entry.path().filename().string());
      // Fails early on a read-only or full disk, before any work.
      write_text_atomic(run_json, mine.dump(2) + "\n");
    }
  }

  RunOptions o_;
  std::string out_;
  int64_t total_ = 0, finished_ = 0;
};

}  // namespace

void register_run(CLI::App& app) {
  auto* cmd = app.add_subcommand("run", "The whole pipeline: heads, plan, convert, distill, shrink, baselines, eval, report");
  static RunOptions o;
  o.teacher = default_teacher();
  cmd->add_option("--teacher", o.teacher, "Teacher model directory (Hugging Face Llama format)")->capture_default_str();
  cmd->add_option("--corpus", o.corpus, "UTF-8 text, or a token directory from `radistill tokenize-corpus`, for "
                  "distillation data and held-out perplexity")->required();
  cmd->add_option("--out", o.out, "Run directory (re-running the same command resumes it)")->required();
  cmd->add_option("--pairs", o.pairs, "KV-probe pairs for head scoring and the report's probe accuracy")->capture_default_str();
  cmd->add_option("--head-examples", o.head_examples, "Probe examples for head scoring")->capture_default_str();
  auto* budget = cmd->add_option("--budget", o.budget, "auto: the smallest kept set that suffices (greedy on the head "
                                 "bank, select keys); or K: the top K heads of the ablation ranking")
                     ->capture_default_str();
  cmd->add_option("--fraction", o.fraction, "Keep the top fraction of heads (rounded up) instead of --budget")
      ->excludes(budget);
  add_ssm_flags(cmd, o.ssm, o.decay);
  auto* bank_steps = cmd->add_option("--bank-steps", o.bank_steps, "Head-bank alignment steps (every head at once)")
                         ->capture_default_str();
  auto* bank_lr = cmd->add_option("--bank-lr", o.bank_lr, "Head-bank learning rate")->capture_default_str();
  cmd->add_option("--bank", o.bank, "Use this head bank of the teacher (`radistill bank`'s --out, or one of its "
                  "snapshots) instead of aligning one")
      ->excludes(bank_steps)
      ->excludes(bank_lr);
  cmd->add_option("--target-ratio", o.sufficiency.target_ratio,
                  "--budget auto: a set suffices when its probe accuracy (select keys) reaches this x the teacher's")
      ->capture_default_str();
  cmd->add_option("--select-candidates", o.sufficiency.candidates,
                  "--budget auto: heads tried at each step (the top of the ablation ranking)")->capture_default_str();
  cmd->add_option("--max-heads", o.sufficiency.max_heads, "--budget auto: largest kept set tried")->capture_default_str();
  cmd->add_option("--select-strategy", o.sufficiency.strategy, "--budget auto: ranking (walk the ablation ranking, "
                  "then prune) or greedy (forward selection over the top candidates)")
      ->capture_default_str()
      ->check(CLI::IsMember({"ranking", "greedy"}));
  cmd->add_option("--select-walk-from", o.sufficiency.walk_from,
                  "--budget auto, ranking: the first prefix the walk distils (0: the first top-k whose assembled hybrid "
                  "retrieves above the no-heads level; K: top-K)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--select-kd-steps", o.select_kd_steps, "--budget auto: judge each candidate set after this many KD "
                  "steps (0: assembled from the bank, no KD)")->capture_default_str();
  cmd->add_option("--select-budget-kd-steps", o.select_budget_kd_steps,
                  "--budget auto: prune the chosen set once more, each removal trial distilled this many KD steps "
                  "(-1: the students' --kd-steps; 0: off)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{-1}, std::numeric_limits<int64_t>::max()));
  cmd->add_option("--shrink-factor", o.shrink_factor, "The shrunk hybrid has d_state / this")->capture_default_str();
  cmd->add_option("--align-steps", o.align_steps, "Hidden-state alignment steps per student after assembly from the bank (0: KD only)")->capture_default_str();
  cmd->add_option("--kd-steps", o.kd_steps, "Logit-distillation steps per student")->capture_default_str();
  cmd->add_option("--shrink-align-steps", o.shrink_align_steps, "Alignment steps after shrinking")->capture_default_str();
  cmd->add_option("--shrink-kd-steps", o.shrink_kd_steps, "Distillation steps after shrinking")->capture_default_str();
  cmd->add_option("--align-lr", o.align_lr, "Alignment learning rate")->capture_default_str();
  cmd->add_option("--kd-lr", o.kd_lr, "Distillation learning rate")->capture_default_str();
  cmd->add_option("--batch", o.batch, "Sequences per distillation step")->capture_default_str();
  cmd->add_option("--seq", o.seq, "Tokens per sequence")->capture_default_str();
  cmd->add_option("--task-share", o.task_share, "Fraction of distillation sequences that are retrieval tasks")->capture_default_str();
  auto* bf16 = cmd->add_flag("--bf16", o.bf16, "Distil with bf16 autocast where the CPU has native bf16 matmuls "
                             "(default: float32, which the fused training kernels make faster on CPUs)");
  cmd->add_flag("--fp32", o.fp32, "Distil in float32 (the default; kept for older command lines)")->excludes(bf16);
  cmd->add_flag("--quick", o.quick, "Demo: only the hybrid, the shrunk hybrid and the pure SSM (no random-heads or "
                "layer-wise baselines); the report says what was trimmed");
  cmd->add_option("--random-draws", o.random_draws, "Random head sets (same budget) distilled as baselines")
      ->capture_default_str();
  cmd->add_option("--heads-sweep", o.heads_sweep, "Also distil hybrids keeping the top k heads, e.g. 0,1,2,4,8 (paper Table 1)")
      ->delimiter(',');
  cmd->add_flag("--dstate-sweep", o.dstate_sweep, "Also shrink the hybrid to d_state N/2 and N/4 (with N/8: paper Table 4)");
  cmd->add_option("--seed", o.seed, "Seed for probes, plans and data order")->capture_default_str();
  cmd->add_option("--nproc", o.nproc, "Data-parallel processes for the head sweep and the distillations "
                  "(radistill launch; --batch must be divisible by it)")->capture_default_str();
  cmd->add_option("--save-every", o.save_every, "Distillation checkpoint interval (steps)")->capture_default_str();
  cmd->add_option("--eval-examples", o.eval_examples, "Examples per evaluation task")->capture_default_str();
  cmd->add_option("--eval-kv-pairs", o.eval_kv_pairs, "KV probe sizes in the evaluation")->delimiter(',')->capture_default_str();
  cmd->add_option("--eval-needle-words", o.eval_needle_words, "Needle filler lengths (words) in the evaluation")
      ->delimiter(',')
      ->capture_default_str();
  cmd->add_option("--probe-task", o.probe_task, "Probe that scores heads and gives the report's probe accuracy: kv (the "
                  "paper's) or needle (for a teacher that cannot do kv)")->capture_default_str();
  cmd->add_option("--context-words", o.context_words, "Needle probe: filler words (also added to the evaluation)")
      ->capture_default_str();
  cmd->add_option("--heads-dir", o.heads_dir, "Use this earlier `radistill heads` output (same teacher, probe and "
                  "--budget/--fraction) instead of running the head sweep again");
  cmd->add_flag("--layerwise-same-cache", o.layerwise_same_cache,
                "Also distil the layer-wise hybrid whose KV cache is nearest the chosen hybrid's (whole layers, at least 1)");
  cmd->add_option("--eval-multi-needle-words", o.eval_multi_needle_words,
                  "Multi-needle filler lengths (words) in the evaluation (default: none)")->delimiter(',');
  cmd->add_option("--eval-needles", o.eval_needles, "Facts per multi-needle example in the evaluation")
      ->capture_default_str();
  cmd->add_flag("--layerwise,!--no-layerwise", o.layerwise, "Distil the layer-wise baselines (25% and 50% of layers; "
                "--no-layerwise skips them)");
  cmd->add_flag("--activation-checkpointing", o.activation_checkpointing,
                "Distillations recompute each student layer in backward (less activation memory, same result)");
  cmd->callback([] {
    // The needle probe's length is always among the evaluation's, so every model has a probe accuracy.
    if (o.probe_task == "needle" &&
        std::find(o.eval_needle_words.begin(), o.eval_needle_words.end(), o.context_words) == o.eval_needle_words.end())
      o.eval_needle_words.insert(o.eval_needle_words.begin(), o.context_words);
    RAD_CHECK(o.shrink_factor >= 1, "--shrink-factor must be >= 1, got {}", o.shrink_factor);
    if (o.budget != "auto") {
      char* end = nullptr;
      long long k = std::strtoll(o.budget.c_str(), &end, 10);
      RAD_CHECK(end != o.budget.c_str() && *end == '\0' && k >= 1, "--budget {}: expected auto or a number of heads >= 1",
                o.budget);
    }
    Pipeline(o).run();
  });
}

}  // namespace rad::cli
