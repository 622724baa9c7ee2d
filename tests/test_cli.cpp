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
