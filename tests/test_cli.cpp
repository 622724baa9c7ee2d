// The CLI end to end on a fixture: outputs parse, bad input exits non-zero with a named error.
#include <ATen/ATen.h>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <sstream>

#include "rad/io/npy.h"
#include "rad/io/safetensors.h"
#include "test_util.h"

namespace rad::test {
namespace {

// A small text corpus for the CLI tests (`lines` numbered copies of one verse).
std::string write_tiny_corpus(const TempDir& dir, int lines) {
  std::ofstream corpus(dir.file("corpus.txt"));
  for (int i = 0; i < lines; ++i) corpus << "And God said, Let there be light: and there was light " << i << ".\n";
  return dir.file("corpus.txt");
}

std::string tiny_tokenizer_dir() { return source_dir() + "/tests/fixtures/tokenizers/trained_kjv"; }

// `pretrain` flags of the tiny teacher (2 layers x 4 heads, d_model 32) used by the CLI tests.
const char* kTinyTeacherFlags =
    " --d-model 32 --n-layer 2 --n-head 4 --n-head-kv 2 --seq 64 --batch 4 --probe-pairs 2 --probe-examples 4"
    " --max-pairs 3";

// Trains the tiny teacher for 4 steps into `out`.
CliResult pretrain_tiny_teacher(const std::string& corpus, const std::string& out) {
  return run_cli("pretrain --tokenizer " + tiny_tokenizer_dir() + " --corpus " + corpus + " --out " + out +
                 kTinyTeacherFlags + " --steps 4 --eval-every 4 --save-every 2");
}

TEST(Cli, EnvReportsBlasThreadsAndAllocator) {
  CliResult r = run_cli("env");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["torch_threads"], 1);
  EXPECT_NE(j["blas"].get<std::string>().find("OpenBLAS"), std::string::npos);
  EXPECT_NE(j["allocator"].get<std::string>().find("gperftools"), std::string::npos);
  EXPECT_TRUE(j.contains("libtorch_version"));
  EXPECT_TRUE(j.contains("cpu_capability"));
}

TEST(Cli, ForwardDumpsLogitsThatMatchTheGolden) {
  TempDir dir;
  auto golden = io::SafetensorsFile::open(fixture_model("llama_gqa") + "/golden.safetensors");
  at::Tensor ids = golden->tensor("input_ids");
  std::string list;
  for (int64_t i = 0; i < ids.size(0); ++i) list += (i ? "," : "") + std::to_string(ids[i].item<int64_t>());
  CliResult r = run_cli("forward " + fixture_model("llama_gqa") + " --token-ids " + list + " --dump-logits " +
                        dir.file("l.npy"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  ASSERT_EQ(j["top5"].size(), 5u);
  at::Tensor logits = io::load_npy(dir.file("l.npy"));
  at::Tensor expected = golden->tensor("logits");
  ASSERT_EQ(logits.sizes(), expected.sizes());
  EXPECT_LT((logits - expected).abs().max().item<double>(), 1e-4);
  EXPECT_EQ(j["top5"][0]["id"].get<int64_t>(), expected[-1].argmax().item<int64_t>());
}

TEST(Cli, GeneratePrintsTheNewTokens) {
  CliResult r = run_cli("generate " + fixture_model("llama_gqa") + " --token-ids 1,5,9 --max-new-tokens 4 --ignore-eos");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out).size(), 4u);
}

TEST(Cli, BadInputGivesANamedErrorAndNonZeroExit) {
  CliResult r = run_cli("forward " + fixture_model("llama_gqa") + " --token-ids 1,x,3");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("\"x\" is not a non-negative integer"), std::string::npos) << r.err;
  r = run_cli("forward " + fixture_model("llama_gqa") + " --token-ids 1,999");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("token id out of range"), std::string::npos) << r.err;
  r = run_cli("inspect /nonexistent-model");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("/nonexistent-model/config.json"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace rad::test

namespace rad::test {
namespace {

// The pipeline's commands end to end at toy size: pretrain -> eval-tasks -> heads -> convert ->
// distill -> shrink -> generate.
TEST(CliPipeline, PretrainEvalTasksAndHeads) {
  TempDir dir;
  write_tiny_corpus(dir, 300);
  CliResult r = pretrain_tiny_teacher(dir.file("corpus.txt"), dir.file("m"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = run_cli("eval-tasks " + dir.file("m") + " --task mqar --pairs 3 --queries 2 --examples 6 --seed 4");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["answers"], 12);
  EXPECT_LE(j["ci95"][0].get<double>(), j["accuracy"].get<double>());
  EXPECT_GE(j["ci95"][1].get<double>(), j["accuracy"].get<double>());
  r = run_cli("heads " + dir.file("m") + " --out " + dir.file("h") + " --pairs 2 --examples 4 --budget 2 --random-draws 2");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::ifstream heads_file(dir.file("h/heads.json"));
  auto heads = nlohmann::json::parse(heads_file);
  EXPECT_EQ(heads["heads"].size(), 8u);
  EXPECT_TRUE(heads.contains("ablate_top_k"));
  EXPECT_TRUE(heads.contains("ablate_random_k"));
  for (const char* f : {"plan.json", "heads.svg", "causal.svg", "heads.md"})
    EXPECT_TRUE(std::filesystem::exists(dir.file(std::string("h/") + f))) << f;
  // Another probe task (for models that cannot solve kv): the files say which probe chose the heads.
  r = run_cli("heads " + dir.file("m") + " --out " + dir.file("hn") +
              " --task needle --context-words 12 --examples 4 --causal-examples 4 --budget 2 --random-draws 1");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::ifstream needle_file(dir.file("hn/heads.json"));
  auto needle = nlohmann::json::parse(needle_file);
  EXPECT_EQ(needle["probe"]["task"], "needle");
  EXPECT_EQ(needle["causal_probe"]["description"], "needle in 12 filler words");
  EXPECT_EQ(needle["heads"].size(), 8u);
  r = run_cli("heads " + dir.file("m") + " --out " + dir.file("h3") + " --task sorting");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("sorting"), std::string::npos) << r.err;
  // Bad options are refused by name.
  r = run_cli("heads " + dir.file("m") + " --out " + dir.file("h2") + " --pairs 500");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("pairs must be in [1, 100]"), std::string::npos) << r.err;

  // The plan feeds the conversion; the hybrid distills, shrinks and generates from text.
  r = run_cli("convert " + dir.file("m") + " --plan " + dir.file("h/plan.json") + " --out " + dir.file("hy"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = run_cli("distill --teacher " + dir.file("m") + " --student " + dir.file("hy") + " --corpus " +
              dir.file("corpus.txt") + " --out " + dir.file("hd") +
              " --align-steps 2 --kd-steps 2 --batch 2 --seq 32 --eval-every 2 --probe-pairs 2 --probe-examples 2");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = run_cli("shrink --model " + dir.file("hd") + " --d-state 2 --out " + dir.file("hs"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::ifstream shrunk_config(dir.file("hs/config.json"));
  EXPECT_EQ(nlohmann::json::parse(shrunk_config)["ssm"]["d_state"], 2);
  r = run_cli("generate " + dir.file("hs") + " --text \"And God said\" --max-new-tokens 3");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // Distilling a teacher as if it were a student is refused by name.
  r = run_cli("distill --teacher " + dir.file("m") + " --student " + dir.file("m") + " --corpus " + dir.file("corpus.txt") +
              " --out " + dir.file("x") + " --kd-steps 1");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("not a hybrid"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace rad::test

namespace rad::test {
namespace {

// export-data writes pretrain's task rows (answers marked where pretrain weights them) and KV probes
// on evaluation keys, as .npy files a PyTorch trainer can read.
TEST(Cli, ExportDataWritesTaskRowsProbesAndCorpus) {
  TempDir dir;
  write_tiny_corpus(dir, 200);
  std::string tok = tiny_tokenizer_dir();
  CliResult r = run_cli("export-data --tokenizer " + tok + " --corpus " + dir.file("corpus.txt") + " --out " +
                        dir.file("d") + " --rows 5 --seq 64 --min-pairs 2 --max-pairs 4 --probe-pairs 3,5 --probe-examples 4");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  at::Tensor ids = io::load_npy(dir.file("d/tasks_ids.npy"));
  at::Tensor answers = io::load_npy(dir.file("d/tasks_answers.npy"));
  EXPECT_EQ(ids.scalar_type(), at::kShort);
  EXPECT_EQ(answers.scalar_type(), at::kByte);
  ASSERT_EQ(ids.sizes(), (std::vector<int64_t>{5, 65}));
  ASSERT_EQ(answers.sizes(), (std::vector<int64_t>{5, 64}));
  EXPECT_GT(answers.sum().item<int64_t>(), 0);
  EXPECT_GE(ids.min().item<int64_t>(), 0);
  std::ifstream meta_file(dir.file("d/meta.json"));
  auto meta = nlohmann::json::parse(meta_file);
  EXPECT_EQ(meta["probes"].size(), 2u);
  EXPECT_EQ(meta["value_token_ids"].size(), 100u);  // the fixture tokenizer has 0-99 as single tokens
  at::Tensor probe = io::load_npy(dir.file("d/probe_kv5_ids.npy"));
  at::Tensor probe_answers = io::load_npy(dir.file("d/probe_kv5_answers.npy"));
  EXPECT_EQ(probe.size(0), 4);
  // Each KV probe example has one answer span, and it ends the example.
  for (int64_t i = 0; i < 4; ++i) {
    int64_t len = probe[i].ge(0).sum().item<int64_t>();
    EXPECT_EQ(probe_answers[i][len - 1].item<int64_t>(), 1);
    EXPECT_EQ(probe_answers[i].narrow(0, len, probe.size(1) - len).sum().item<int64_t>(), 0);
  }
  EXPECT_GT(io::load_npy(dir.file("d/corpus_train.npy")).numel(), 100);
  r = run_cli("export-data --tokenizer " + tok + " --corpus " + dir.file("corpus.txt") + " --out " + dir.file("e") +
              " --rows 0");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("--rows must be >= 1"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace rad::test

namespace rad::test {
namespace {

std::string slurp_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// `radistill run` end to end at toy size on a tiny HF-format teacher: every stage, the report, the
// settings guard, skipping finished stages, and a SIGKILL at a random point followed by a resume
// that ends with the same models (bit for bit) and report numbers as the uninterrupted run.
TEST(CliRun, PipelineReportResumeAndSigkill) {
  TempDir dir;
  // 2000 lines: the held-out 2% must fill the evaluation's perplexity windows (256 tokens).
  write_tiny_corpus(dir, 2000);
  CliResult r = pretrain_tiny_teacher(dir.file("corpus.txt"), dir.file("teacher"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::string args = "run --teacher " + dir.file("teacher") + " --corpus " + dir.file("corpus.txt") +
                     " --pairs 2 --head-examples 4 --bank-steps 4 --max-heads 2 --select-kd-steps 2 --random-draws 3"
                     " --align-steps 4 --kd-steps 4 --shrink-align-steps 2 --shrink-kd-steps 2 --batch 2 --seq 32"
                     " --eval-examples 2 --eval-kv-pairs 2 --eval-needle-words 20 --save-every 1 --fp32";
  r = run_cli(args + " --out " + dir.file("a"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string eval_text = slurp_file(dir.file("a/eval/eval.json"));
  EXPECT_NE(eval_text.find("needle_20w_d0.50"), std::string::npos) << "--eval-needle-words reaches eval";
  EXPECT_EQ(eval_text.find("needle_600w"), std::string::npos);
  auto report = nlohmann::json::parse(slurp_file(dir.file("a/report.json")));
  EXPECT_EQ(report["n_heads_total"], 8);
  std::map<std::string, nlohmann::json> by_kind;
  for (const auto& m : report["models"]) by_kind[m["kind"]] = m;
  EXPECT_EQ(by_kind.size(), 7u);
  int random_draws = 0;
  for (const auto& m : report["models"]) random_draws += m["kind"] == "random_heads";
  EXPECT_EQ(random_draws, 3) << "three seeded random-head baselines, as asked";
  for (const char* kind : {"teacher", "hybrid", "shrunk", "pure_ssm", "random_heads", "layerwise_25", "layerwise_50"}) {
    ASSERT_TRUE(by_kind.count(kind)) << kind;
    const auto& m = by_kind[kind];
    for (const char* field : {"name", "heads_kept", "d_state", "probe_accuracy", "coverage_retrieval", "perplexity"})
      EXPECT_TRUE(m.contains(field)) << kind << " " << field;
    for (const char* L : {"128", "2048", "4096", "32768"}) EXPECT_TRUE(m["cache_bytes"].contains(L)) << kind << " " << L;
    ASSERT_TRUE(m["decode"].is_object()) << kind;
    EXPECT_GT(m["decode"]["tokens_per_s"].get<double>(), 0.0) << kind;
    EXPECT_GT(m["decode"]["cache_bytes_used"].get<int64_t>(), 0) << kind;
  }
  EXPECT_EQ(by_kind["pure_ssm"]["heads_kept"], 0);
  EXPECT_EQ(by_kind["layerwise_50"]["heads_kept"], 4);  // one of two layers, all 4 heads
  EXPECT_EQ(by_kind["hybrid"]["heads_kept"], by_kind["random_heads"]["heads_kept"]);
  EXPECT_EQ(by_kind["hybrid"]["d_state"], 8);  // the teacher's head dim
  EXPECT_EQ(by_kind["shrunk"]["d_state"], 1);  // 8 / 8
  // Fixed-size SSM state: the pure SSM's cache does not grow with the context; the teacher's does.
  EXPECT_EQ(by_kind["pure_ssm"]["cache_bytes"]["128"], by_kind["pure_ssm"]["cache_bytes"]["32768"]);
  EXPECT_LT(by_kind["teacher"]["cache_bytes"]["128"].get<int64_t>(), by_kind["teacher"]["cache_bytes"]["32768"].get<int64_t>());
  // --budget auto: the head bank, then the kept set chosen by sufficiency on it.
  auto sufficiency = nlohmann::json::parse(slurp_file(dir.file("a/select/sufficiency.json")));
  EXPECT_EQ(sufficiency["k"], by_kind["hybrid"]["heads_kept"]);
  EXPECT_EQ(sufficiency["selection_probe"]["key_split"], "select");
  EXPECT_TRUE(sufficiency["probe"].contains("accuracy"));
  // The second pruning is judged at the students' budget (--kd-steps 4; --select-budget-kd-steps -1).
  ASSERT_TRUE(sufficiency["budget_proxy"].is_string()) << sufficiency.dump();
  EXPECT_NE(sufficiency["budget_proxy"].get<std::string>().find("distilled 4 KD steps"), std::string::npos);
  EXPECT_TRUE(sufficiency["budget_path"].is_array());
  auto bank = nlohmann::json::parse(slurp_file(dir.file("a/bank/bank.json")));
  EXPECT_EQ(bank["heads"].size(), 8u);
  // Proxy students are cached per kept set and only for the proxy that made them: `select` into the
  // same folder with another proxy budget is refused, naming the cache's settings file.
  EXPECT_TRUE(std::filesystem::exists(dir.file("a/select/proxy/settings.json")));
  CliResult other_proxy = run_cli("select " + dir.file("teacher") + " --bank " + dir.file("a/bank") + " --heads " +
                                  dir.file("a/heads") + " --out " + dir.file("a/select") +
                                  " --examples 4 --max-heads 2 --proxy-kd-steps 3 --corpus " + dir.file("corpus.txt"));
  EXPECT_NE(other_proxy.exit_code, 0);
  EXPECT_NE(other_proxy.err.find("proxy/settings.json"), std::string::npos) << other_proxy.err;
  // The second pruning needs the short proxy it escalates from: refused before any work, named.
  CliResult no_proxy = run_cli("select " + dir.file("teacher") + " --bank " + dir.file("a/bank") + " --heads " +
                               dir.file("a/heads") + " --out " + dir.file("b_select") + " --budget-kd-steps 3");
  EXPECT_NE(no_proxy.exit_code, 0);
  EXPECT_NE(no_proxy.err.find("--budget-kd-steps 3 needs --proxy-kd-steps > 0"), std::string::npos) << no_proxy.err;
  CliResult bad_floor = run_cli("select " + dir.file("teacher") + " --bank " + dir.file("a/bank") + " --heads " +
                                dir.file("a/heads") + " --out " + dir.file("b_select") + " --budget-floor 2");
  EXPECT_NE(bad_floor.exit_code, 0);
  EXPECT_NE(bad_floor.err.find("--budget-floor"), std::string::npos) << bad_floor.err;
  EXPECT_NE(slurp_file(dir.file("a/init/hybrid/README.md")).find("head bank"), std::string::npos);
  // A 2-pair KV probe: a guess scores 50%, so every random draw (at most 100%) is called noise.
  EXPECT_NE(slurp_file(dir.file("a/report.md")).find("every draw within twice chance (50.0%): noise"),
            std::string::npos);
  // The report's heat map outlines the run's kept set (select's), not the sweep's own plan.
  EXPECT_NE(slurp_file(dir.file("a/report.md")).find("![head scores](kept_heads.svg)"), std::string::npos);
  for (const char* f : {"report.md", "memory.svg", "accuracy_vs_heads.svg", "kept_heads.svg", "heads/heads.svg", "eval/eval.json",
                        "select/sufficiency.svg", "select/plan.json"})
    EXPECT_TRUE(std::filesystem::exists(dir.file(std::string("a/") + f))) << f;

  // Re-running skips finished stages; other settings over the same directory are refused.
  r = run_cli(args + " --out " + dir.file("a"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("distill_hybrid: done earlier, skipped"), std::string::npos) << r.err;
  std::string other = args;
  other.replace(other.find("--kd-steps 4"), 12, "--kd-steps 5");
  r = run_cli(other + " --out " + dir.file("a"));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("holds another run (its kd_steps is 4, this run's is 5)"), std::string::npos) << r.err;

  // SIGKILL at a random point once the hybrid's distillation has a checkpoint, then resume.
  std::random_device rd;
  int delay_ms = static_cast<int>(rd() % 400);
  SCOPED_TRACE("kill delay " + std::to_string(delay_ms) + " ms after the first distillation checkpoint");
  std::string b = dir.file("b");
  std::string script = std::string(RAD_CLI_PATH) + " --threads 1 " + args + " --out " + b + " >" + dir.file("b.log") +
                       " 2>&1 & pid=$!; while [ ! -e " + b + "/models/hybrid/checkpoints/latest ] && kill -0 $pid 2>/dev/null;"
                       " do sleep 0.01; done; sleep " + std::to_string(delay_ms / 1000.0) +
                       "; kill -9 $pid 2>/dev/null; wait $pid; exit 0";
  ASSERT_EQ(std::system(("bash -c '" + script + "'").c_str()), 0);
  EXPECT_FALSE(std::filesystem::exists(b + "/report.json")) << "the run finished before it was killed";
  r = run_cli(args + " --out " + b);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (const char* m : {"hybrid", "shrunk", "pure_ssm", "random_heads", "layerwise_25", "layerwise_50"}) {
    std::string rel = std::string("/models/") + m + "/model.safetensors";
    EXPECT_TRUE(slurp_file(dir.file("a") + rel) == slurp_file(b + rel)) << m << " differs after kill + resume";
  }
  auto resumed = nlohmann::json::parse(slurp_file(b + "/report.json"));
  ASSERT_EQ(resumed["models"].size(), report["models"].size());
  for (size_t i = 0; i < report["models"].size(); ++i)
    for (const char* field : {"probe_accuracy", "perplexity", "tasks", "cache_bytes"})
      EXPECT_EQ(resumed["models"][i][field], report["models"][i][field]) << i << " " << field;
}

// `radistill run --probe-task needle --heads-dir DIR`: a teacher that cannot do the KV probe (like
// SmolLM2-135M) is scored on the needle; an earlier sweep is reused when its probe and selection
// match the run's and refused with the differing field when not; the report's probe accuracy is the
// needle's (mean over the evaluated depths at the probe's length); --no-layerwise skips those baselines.
TEST(CliRun, NeedleProbeReusesAnEarlierHeadSweep) {
  TempDir dir;
  write_tiny_corpus(dir, 2000);
  CliResult r = pretrain_tiny_teacher(dir.file("corpus.txt"), dir.file("teacher"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = run_cli("heads " + dir.file("teacher") + " --out " + dir.file("sweep") +
              " --task needle --context-words 20 --examples 4 --causal-examples 4 --random-draws 1 --budget 2");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto sweep = nlohmann::json::parse(slurp_file(dir.file("sweep/heads.json")));
  EXPECT_EQ(sweep["probe"]["context_words"], 20);
  std::string args = "run --teacher " + dir.file("teacher") + " --corpus " + dir.file("corpus.txt") +
                     " --probe-task needle --context-words 20 --heads-dir " + dir.file("sweep") +
                     " --budget 2 --random-draws 1 --no-layerwise --bank-steps 2 --align-steps 2 --kd-steps 2 --shrink-align-steps 1"
                     " --shrink-kd-steps 1 --batch 2 --seq 32 --eval-examples 2 --eval-kv-pairs 2"
                     " --eval-needle-words 30 --fp32";
  // Another selection than the sweep's is refused before any work, naming both.
  std::string other = args;
  other.replace(other.find("--budget 2"), 10, "--budget 3");
  r = run_cli(other + " --out " + dir.file("refused"));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("its heads were selected by {\"budget\":2,\"kind\":\"budget\"}"), std::string::npos) << r.err;
  EXPECT_FALSE(std::filesystem::exists(dir.file("refused/models")));
  r = run_cli("run --teacher " + dir.file("teacher") + " --corpus " + dir.file("corpus.txt") + " --heads-dir " +
              dir.file("sweep") + " --budget 2 --out " + dir.file("refused_kv"));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("its probe task is needle, this run's --probe-task is kv"), std::string::npos) << r.err;

  r = run_cli(args + " --out " + dir.file("a"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("heads: the sweep in " + dir.file("sweep") + " (not run again)"), std::string::npos) << r.err;
  EXPECT_FALSE(std::filesystem::exists(dir.file("a/heads")));
  auto report = nlohmann::json::parse(slurp_file(dir.file("a/report.json")));
  EXPECT_EQ(report["probe_task"], "needle");
  EXPECT_EQ(report["probe_label"], "needle probe (20 filler words)");
  std::set<std::string> kinds;
  for (const auto& m : report["models"]) kinds.insert(m["kind"].get<std::string>());
  EXPECT_EQ(kinds, (std::set<std::string>{"teacher", "hybrid", "shrunk", "pure_ssm", "random_heads"}));
  // The probe's length joins the evaluation (next to --eval-needle-words), and each model's probe
  // accuracy is the mean of its needle_20w tasks.
  auto eval = nlohmann::json::parse(slurp_file(dir.file("a/eval/eval.json")));
  ASSERT_EQ(eval["models"].size(), report["models"].size());
  for (size_t i = 0; i < report["models"].size(); ++i) {
    const auto& tasks = eval["models"][i]["tasks"];
    double sum = 0;
    int n = 0;
    for (auto it = tasks.begin(); it != tasks.end(); ++it)
      if (it.key().rfind("needle_20w_d", 0) == 0) {
        sum += it.value()["accuracy"].get<double>();
        ++n;
      }
    EXPECT_TRUE(tasks.contains("needle_30w_d0.50"));
    ASSERT_GT(n, 0) << i;
    EXPECT_DOUBLE_EQ(report["models"][i]["probe_accuracy"].get<double>(), sum / n) << i;
  }
  EXPECT_NE(slurp_file(dir.file("a/report.md")).find("--no-layerwise: layer-wise baselines not run"), std::string::npos);
}

// A long bank keeps snapshots (`bank --snapshot-tokens`), also across a resume; `run --bank SNAPSHOT`
// assembles its students from one instead of aligning a bank (with the layer-wise hybrid at the
// hybrid's cache and the multi-needle task), and `bank-curve` puts such runs against bank tokens.
TEST(CliRun, BankSnapshotsFeedRunsAndTheCurve) {
  TempDir dir;
  write_tiny_corpus(dir, 2000);
  CliResult r = pretrain_tiny_teacher(dir.file("corpus.txt"), dir.file("teacher"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // 2 x 32 = 64 tokens a step: the 64-token snapshot at step 1, then stopped after step 2; resumed,
  // the 200-token one at step 4 (256 tokens done).
  const std::string bank = "bank " + dir.file("teacher") + " --corpus " + dir.file("corpus.txt") + " --out " +
                           dir.file("bank") + " --steps 5 --batch 2 --seq 32 --save-every 1 --snapshot-tokens 64,200";
  r = run_cli(bank + " --stop-after 2");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(std::filesystem::is_directory(dir.file("bank/snapshots/tokens-64")));
  r = run_cli(bank + " --resume");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::set<std::string> snapshots;
  for (const auto& e : std::filesystem::directory_iterator(dir.file("bank/snapshots")))
    snapshots.insert(e.path().filename().string());
  EXPECT_EQ(snapshots, (std::set<std::string>{"tokens-64", "tokens-256"}));
  auto snap = nlohmann::json::parse(slurp_file(dir.file("bank/snapshots/tokens-64/bank.json")));
  EXPECT_EQ(snap["tokens"], 64);
  EXPECT_EQ(snap["steps"], 1);
  EXPECT_EQ(snap["heads"].size(), 2u * 4u);
  EXPECT_TRUE(std::filesystem::exists(dir.file("bank/snapshots/tokens-64/tokenizer.json")));
  r = run_cli("bank " + dir.file("teacher") + " --corpus " + dir.file("corpus.txt") + " --out " + dir.file("bad") +
              " --snapshot-tokens 2M,1M --steps 1");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("snapshot token counts must be positive and ascending (got 2000000,1000000)"), std::string::npos)
      << r.err;

  r = run_cli("heads " + dir.file("teacher") + " --out " + dir.file("sweep") +
              " --task needle --context-words 20 --examples 4 --causal-examples 4 --random-draws 1 --budget 2");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::string args = "run --teacher " + dir.file("teacher") + " --corpus " + dir.file("corpus.txt") +
                     " --probe-task needle --context-words 20 --heads-dir " + dir.file("sweep") +
                     " --budget auto --select-kd-steps 0 --max-heads 2 --select-candidates 2 --head-examples 4"
                     " --random-draws 1 --no-layerwise --layerwise-same-cache --align-steps 0 --kd-steps 2"
                     " --shrink-align-steps 1 --shrink-kd-steps 1 --batch 2 --seq 32 --eval-examples 2"
                     " --eval-kv-pairs 2 --eval-needle-words 30 --eval-multi-needle-words 30 --eval-needles 2 --fp32";
  r = run_cli(args + " --bank " + dir.file("bank/snapshots/tokens-64") + " --bank-steps 3 --out " + dir.file("refused"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("--bank-steps excludes --bank"), std::string::npos) << r.err;
  r = run_cli(args + " --bank " + dir.file("nowhere") + " --out " + dir.file("refused2"));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("--bank " + dir.file("nowhere") + ": no config.json and model.safetensors"), std::string::npos)
      << r.err;
  r = run_cli(args + " --bank " + dir.file("bank/snapshots/tokens-64") + " --out " + dir.file("at64"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_FALSE(std::filesystem::exists(dir.file("at64/bank"))) << "no bank of its own";
  auto run_json = nlohmann::json::parse(slurp_file(dir.file("at64/run.json")));
  EXPECT_EQ(run_json["bank"], std::filesystem::absolute(dir.file("bank/snapshots/tokens-64")).lexically_normal().string());
  auto report = nlohmann::json::parse(slurp_file(dir.file("at64/report.json")));
  std::map<std::string, nlohmann::json> by_kind;
  for (const auto& m : report["models"]) by_kind[m["kind"].get<std::string>()] = m;
  ASSERT_TRUE(by_kind.count("layerwise_cache"));
  // Chosen on the snapshot by sufficiency (the sweep's own --budget 2 is not compared under auto):
  // at most 2 heads, at most 2 KV groups -> one whole layer of 4 heads.
  const int64_t k = by_kind["hybrid"]["heads_kept"].get<int64_t>();
  EXPECT_LE(k, 2);
  EXPECT_EQ(report["settings"]["kept_heads"].size(), static_cast<size_t>(k));
  EXPECT_EQ(by_kind["layerwise_cache"]["heads_kept"], 4);
  EXPECT_TRUE(by_kind["hybrid"]["tasks"].contains("multineedle_2x30w"));
  // The same run directory with another bank is another run: refused, naming the field.
  r = run_cli(args + " --bank " + dir.file("bank/snapshots/tokens-256") + " --out " + dir.file("at64"));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("holds another run (its bank is"), std::string::npos) << r.err;

  r = run_cli("bank-curve " + dir.file("at64") + " --out " + dir.file("curve"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto curve = nlohmann::json::parse(slurp_file(dir.file("curve/report.json")));
  ASSERT_EQ(curve["bank_curve"].size(), 1u);
  EXPECT_EQ(curve["bank_curve"][0]["bank_tokens"], 64);
  EXPECT_EQ(curve["bank_curve"][0]["k"], k);
  EXPECT_EQ(curve["models"], report["models"]);
  EXPECT_TRUE(std::filesystem::exists(dir.file("curve/curve.svg")));
  // A run that aligned its own bank has no snapshot behind it: named, not guessed.
  r = run_cli("bank-curve " + dir.file("sweep") + " --out " + dir.file("curve2"));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("report.json: no such file"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace rad::test

namespace rad::test {
namespace {

// `radistill pretrain` SIGKILLed at a random point after its first checkpoint, then resumed with
// --resume, ends with the same weights (bit for bit) and metrics log as an uninterrupted run.
TEST(CliRun, PretrainResumesAfterSigkill) {
  TempDir dir;
  write_tiny_corpus(dir, 300);
  std::string args = "pretrain --tokenizer " + tiny_tokenizer_dir() + " --corpus " + dir.file("corpus.txt") +
                     kTinyTeacherFlags + " --steps 150 --eval-every 50 --save-every 1 --log-every 1";
  CliResult r = run_cli(args + " --out " + dir.file("a"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::random_device rd;
  int delay_ms = static_cast<int>(rd() % 300);
  SCOPED_TRACE("kill delay " + std::to_string(delay_ms) + " ms after the first checkpoint");
  std::string b = dir.file("b");
  std::string script = std::string(RAD_CLI_PATH) + " --threads 1 " + args + " --out " + b + " >/dev/null 2>&1 & pid=$!;"
                       " while [ ! -e " + b + "/checkpoints/latest ] && kill -0 $pid 2>/dev/null; do sleep 0.01; done;"
                       " sleep " + std::to_string(delay_ms / 1000.0) + "; kill -9 $pid 2>/dev/null; wait $pid; exit 0";
  ASSERT_EQ(std::system(("bash -c '" + script + "'").c_str()), 0);
  EXPECT_FALSE(std::filesystem::exists(b + "/model.safetensors")) << "the run finished before it was killed";
  r = run_cli(args + " --out " + b + " --resume");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(slurp_file(dir.file("a/model.safetensors")) == slurp_file(b + "/model.safetensors"));
  // The metrics log has the same steps and losses (timings differ).
  auto records = [](const std::string& path) {
    std::vector<std::pair<int64_t, double>> out;
    std::ifstream in(path);
    std::string line;
    while (std::getline(in, line)) {
      auto j = nlohmann::json::parse(line);
      if (j.contains("loss")) out.push_back({j["step"].get<int64_t>(), j["loss"].get<double>()});
    }
    return out;
  };
  auto ra = records(dir.file("a/metrics.jsonl")), rb = records(b + "/metrics.jsonl");
  EXPECT_EQ(ra.size(), 150u);
  EXPECT_EQ(ra, rb);
}

}  // namespace
}  // namespace rad::test
