// The CLI end to end on a fixture: outputs parse, bad input exits non-zero with a named error.
#include <ATen/ATen.h>

#include <nlohmann/json.hpp>

#include <filesystem>
#include <fstream>

#include "rad/io/npy.h"
#include "rad/io/safetensors.h"
#include "test_util.h"

namespace rad::test {
namespace {

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
  {
    std::ofstream corpus(dir.file("corpus.txt"));
    for (int i = 0; i < 300; ++i) corpus << "And God said, Let there be light: and there was light " << i << ".\n";
  }
  std::string tok = source_dir() + "/tests/fixtures/tokenizers/trained_kjv";
  CliResult r = run_cli("pretrain --tokenizer " + tok + " --corpus " + dir.file("corpus.txt") + " --out " +
                        dir.file("m") +
                        " --d-model 32 --n-layer 2 --n-head 4 --n-head-kv 2 --seq 64 --batch 4 --steps 4"
                        " --eval-every 4 --save-every 2 --probe-pairs 2 --probe-examples 4 --max-pairs 3");
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
  {
    std::ofstream corpus(dir.file("corpus.txt"));
    for (int i = 0; i < 200; ++i) corpus << "And God said, Let there be light: and there was light " << i << ".\n";
  }
  std::string tok = source_dir() + "/tests/fixtures/tokenizers/trained_kjv";
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
