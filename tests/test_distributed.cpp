// Data-parallel training over c10d (Gloo on loopback): the torchrun environment, the collectives,
// the launcher, and `pretrain` / `distill` on 2 processes against 1 process.
#include <ATen/ATen.h>

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "rad/io/safetensors.h"
#include "rad/parallel/launch.h"
#include "rad/parallel/process_group.h"
#include "rad/parallel/shard.h"
#include "test_util.h"

namespace rad::test {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// ---------------------------------------------------------------- environment and sharding

parallel::LaunchEnv env_of(const std::map<std::string, std::string>& vars) {
  return parallel::read_launch_env([&](const char* name) -> const char* {
    auto it = vars.find(name);
    return it == vars.end() ? nullptr : it->second.c_str();
  });
}

TEST(DistEnv, ReadsTheTorchrunVariablesAndNamesBadOnes) {
  parallel::LaunchEnv none = env_of({});
  EXPECT_EQ(none.world_size, 1);
  EXPECT_EQ(none.rank, 0);
  parallel::LaunchEnv e = env_of({{"RANK", "1"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "127.0.0.1"}, {"MASTER_PORT", "29511"}});
  EXPECT_EQ(e.rank, 1);
  EXPECT_EQ(e.world_size, 2);
  EXPECT_EQ(e.local_rank, 1);  // defaults to RANK
  EXPECT_EQ(e.master_addr, "127.0.0.1");
  EXPECT_EQ(e.master_port, 29511);
  EXPECT_EQ(env_of({{"RANK", "3"}, {"LOCAL_RANK", "0"}, {"WORLD_SIZE", "4"}, {"MASTER_ADDR", "h"}, {"MASTER_PORT", "1"}})
                .local_rank,
            0);
  EXPECT_RAD_ERROR(env_of({{"RANK", "2"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "h"}, {"MASTER_PORT", "1"}}),
                   "RANK=\"2\": expected an integer in [0, WORLD_SIZE 2)");
  EXPECT_RAD_ERROR(env_of({{"RANK", "0"}, {"WORLD_SIZE", "two"}}), "WORLD_SIZE=\"two\"");
  EXPECT_RAD_ERROR(env_of({{"WORLD_SIZE", "2"}}), "RANK is not");
  EXPECT_RAD_ERROR(env_of({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_PORT", "1"}}), "needs MASTER_ADDR");
  EXPECT_RAD_ERROR(env_of({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "h"}, {"MASTER_PORT", "70000"}}),
                   "MASTER_PORT=\"70000\": expected a TCP port");
}

TEST(DistShard, RanksTakeDisjointBlocksWhoseUnionIsTheGlobalBatch) {
  for (int world : {1, 2, 3, 4, 6}) {
    std::vector<int> owner(12, -1);
    for (int r = 0; r < world; ++r) {
      parallel::RowShard s = parallel::shard_rows(12, r, world);
      EXPECT_EQ(s.count, 12 / world);
      for (int64_t i = s.begin; i < s.begin + s.count; ++i) {
        EXPECT_EQ(owner[i], -1) << "row " << i << " given twice";
        owner[i] = r;
      }
    }
    for (int i = 0; i < 12; ++i) EXPECT_NE(owner[i], -1) << "row " << i << " not given, world " << world;
  }
  EXPECT_RAD_ERROR(parallel::shard_rows(6, 0, 4), "--batch 6 (the global batch) is not divisible by WORLD_SIZE 4");
}

// ---------------------------------------------------------------- collectives (two ranks as threads)

parallel::LaunchEnv rank_env(int rank, int world, int port) {
  parallel::LaunchEnv e;
  e.rank = rank;
  e.local_rank = rank;
  e.world_size = world;
  e.master_addr = "127.0.0.1";
  e.master_port = port;
  return e;
}

TEST(ProcessGroup, GradientsSumAndMeanInOneBufferAndParametersBroadcast) {
  const int port = parallel::free_tcp_port("127.0.0.1");
  struct Seen {
    at::Tensor grad_a, grad_b, extra, mean, param;
  };
  auto body = [&](int rank) {
    auto group = parallel::ProcessGroup::connect(rank_env(rank, 2, port), std::chrono::seconds(20));
    // Two "parameters"; rank 1 leaves b without a gradient (it counts as zeros and receives one).
    at::Tensor a = at::full({2, 3}, rank + 1.0).set_requires_grad(true);
    at::Tensor b = at::full({4}, 10.0 * (rank + 1)).set_requires_grad(true);
    a.mutable_grad() = at::arange(6, at::kFloat).reshape({2, 3}) * (rank + 1);
    if (rank == 0) b.mutable_grad() = at::full({4}, 0.5);
    at::Tensor extra = at::full({1}, 1.5 * (rank + 1));
    group->allreduce_gradients({a, b}, parallel::Reduce::kSum, &extra, "test all-reduce");
    at::Tensor m = at::full({3}, static_cast<float>(rank));
    group->allreduce(m, parallel::Reduce::kMean, "test mean");
    group->broadcast({a, b}, 0, "test broadcast");
    group->barrier("test barrier");
    return Seen{a.grad().clone(), b.grad().clone(), extra.clone(), m.clone(), b.detach().clone()};
  };
  auto r1 = std::async(std::launch::async, body, 1);
  Seen s0 = body(0);
  Seen s1 = r1.get();
  for (const Seen* s : {&s0, &s1}) {
    EXPECT_TRUE(at::equal(s->grad_a, at::arange(6, at::kFloat).reshape({2, 3}) * 3));
    EXPECT_TRUE(at::equal(s->grad_b, at::full({4}, 0.5)));
    EXPECT_FLOAT_EQ(s->extra.item<float>(), 4.5f);
    EXPECT_TRUE(at::equal(s->mean, at::full({3}, 0.5)));
    EXPECT_TRUE(at::equal(s->param, at::full({4}, 10.0)));  // rank 0's values everywhere
  }
}

// Each rank's string reaches every rank, indexed by rank: an empty one and bytes above 127 included.
TEST(ProcessGroup, AllgatherStringsGivesEveryRankEveryRanksString) {
  const int port = parallel::free_tcp_port("127.0.0.1");
  const std::vector<std::string> sent = {"{\"rank\": 0, \"text\": \"caf\u00e9 \u2192\"}", ""};
  auto body = [&](int rank) {
    auto group = parallel::ProcessGroup::connect(rank_env(rank, 2, port), std::chrono::seconds(20));
    return group->allgather_strings(sent[rank], "test gather");
  };
  auto r1 = std::async(std::launch::async, body, 1);
  std::vector<std::string> g0 = body(0), g1 = r1.get();
  EXPECT_EQ(g0, sent);
  EXPECT_EQ(g1, sent);
  parallel::ProcessGroup single;
  EXPECT_EQ(single.allgather_strings("alone", "test gather"), std::vector<std::string>{"alone"});
}

// A peer that never joins a collective makes it fail within the timeout, naming that rank.
TEST(ProcessGroup, AHungPeerIsNamedWithinTheTimeout) {
  const int port = parallel::free_tcp_port("127.0.0.1");
  std::promise<void> rank0_done;
  auto idle = std::async(std::launch::async, [&] {
    auto group = parallel::ProcessGroup::connect(rank_env(1, 2, port), std::chrono::seconds(2));
    rank0_done.get_future().wait();  // joins the group, then never takes part in the collective
  });
  auto group = parallel::ProcessGroup::connect(rank_env(0, 2, port), std::chrono::seconds(2));
  at::Tensor t = at::ones({8});
  const auto t0 = Clock::now();
  std::string message;
  try {
    group->allreduce(t, parallel::Reduce::kSum, "the all-reduce under test");
    ADD_FAILURE() << "the all-reduce with an absent peer returned";
  } catch (const Error& e) {
    message = e.what();
  }
  const double waited = seconds_since(t0);
  rank0_done.set_value();
  idle.get();
  EXPECT_NE(message.find("rank 0 of 2: the all-reduce under test failed"), std::string::npos) << message;
  EXPECT_NE(message.find("rank 1 has not reached this collective"), std::string::npos) << message;
  EXPECT_GE(waited, 1.5);
  EXPECT_LT(waited, 15.0);
}

// ---------------------------------------------------------------- the launcher

TEST(Launch, GivesEachRankTheTorchrunEnvironment) {
  parallel::LaunchOptions o;
  o.processes = 3;
  o.program = "/bin/sh";
  o.args = {"-c", "[ \"$WORLD_SIZE\" = 3 ] && [ \"$LOCAL_RANK\" = \"$RANK\" ] && [ \"$LOCAL_WORLD_SIZE\" = 3 ] && "
                  "[ \"$MASTER_ADDR\" = 127.0.0.1 ] && [ \"$MASTER_PORT\" -gt 0 ] && [ \"$RANK\" -lt 3 ]"};
  EXPECT_NO_THROW(parallel::launch(o));
}

TEST(Launch, AFailingRankStopsTheOthersAndIsNamed) {
  parallel::LaunchOptions o;
  o.processes = 3;
  o.program = "/bin/sh";
  o.args = {"-c", "if [ \"$RANK\" = 1 ]; then sleep 0.2; exit 3; fi; exec sleep 60"};
  const auto t0 = Clock::now();
  EXPECT_RAD_ERROR(parallel::launch(o), "launch: rank 1 of 3 failed first (rank 1 exited with status 3)");
  EXPECT_LT(seconds_since(t0), 20.0) << "the other ranks were not stopped";
}

TEST(Launch, PrefixesEveryOutputLineWithItsRank) {
  CliResult r = run_cli("launch -n 2 -- env");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::map<std::string, std::string> per_rank;
  std::istringstream lines(r.out);
  for (std::string line; std::getline(lines, line);) {
    ASSERT_EQ(line.rfind("[rank ", 0), 0u) << line;
    std::string rank = line.substr(0, line.find(']') + 1);
    per_rank[rank] += line.substr(rank.size() + 1) + "\n";
  }
  ASSERT_EQ(per_rank.size(), 2u);
  for (const auto& [rank, out] : per_rank) {
    auto j = nlohmann::json::parse(out);  // each rank's own `radistill env` JSON, whole
    EXPECT_EQ(j["torch_threads"], 1) << rank;
  }
}

// ---------------------------------------------------------------- pretrain on 2 processes

std::string tiny_tokenizer_dir() { return source_dir() + "/tests/fixtures/tokenizers/trained_kjv"; }

std::string write_corpus(const TempDir& dir) {
  std::ofstream corpus(dir.file("corpus.txt"));
  for (int i = 0; i < 300; ++i) corpus << "And God said, Let there be light: and there was light " << i << ".\n";
  return dir.file("corpus.txt");
}

// The tiny teacher of the CLI tests; a global batch of 4 is 2 rows per rank on 2 processes.
std::string pretrain_args(const TempDir& dir, int steps, int batch = 4, int save_every = 1000) {
  return "pretrain --tokenizer " + tiny_tokenizer_dir() + " --corpus " + dir.file("corpus.txt") +
         " --d-model 32 --n-layer 2 --n-head 4 --n-head-kv 2 --seq 64 --probe-pairs 2 --probe-examples 4"
         " --max-pairs 3 --warmup 2 --lr 3e-3 --log-every 1 --eval-every 1000 --steps " + std::to_string(steps) +
         " --batch " + std::to_string(batch) + " --save-every " + std::to_string(save_every);
}

// The largest relative L2 difference ||a - b|| / ||a|| over the tensors of two safetensors files
// (checking that both hold the same names); `max_element` gets the largest |a - b| / max |a|.
double max_relative_difference(const std::string& path_a, const std::string& path_b, double* max_element = nullptr) {
  auto a = io::SafetensorsFile::open(path_a), b = io::SafetensorsFile::open(path_b);
  EXPECT_EQ(a->entries().size(), b->entries().size());
  double worst = 0, worst_element = 0;
  for (const auto& e : a->entries()) {
    if (!b->contains(e.name)) {
      ADD_FAILURE() << e.name << " missing from " << path_b;
      continue;
    }
    at::Tensor ta = a->tensor(e.name).to(at::kDouble), tb = b->tensor(e.name).to(at::kDouble);
    worst = std::max(worst, (ta - tb).norm().item<double>() / std::max(ta.norm().item<double>(), 1e-12));
    worst_element = std::max(worst_element, (ta - tb).abs().max().item<double>() /
                                                std::max(ta.abs().max().item<double>(), 1e-12));
  }
  if (max_element) *max_element = worst_element;
  return worst;
}

std::vector<double> logged_losses(const std::string& metrics) {
  std::vector<double> out;
  std::istringstream in(read_file(metrics));
  for (std::string line; std::getline(in, line);) {
    auto j = nlohmann::json::parse(line);
    if (j.contains("loss")) out.push_back(j["loss"].get<double>());
  }
  return out;
}

// Why 1e-5 of each tensor's L2 norm: the two runs compute the same float32 sums in a different
// order (each rank's half of the batch, then the all-reduce, against one pass over the batch), so
// gradients differ by a few ulps (~1e-7 relative). Measured after 6 steps: at most 6e-7 (pretrain)
// and 2e-6 (distill). A logic error (a rank on the wrong rows, a local instead of a global
// normalisation, clipping before the all-reduce) changes whole updates, each about lr / |w| ~ 1e-2
// of the weights, three orders above the bound. Not the largest single element: AdamW divides each
// element's step by its own gradient scale, which turns rounding on an element whose gradient
// nearly cancels into a visible change (measured: one element of 3072 at 3e-5 of the tensor's
// largest value in distill, while the tensor's L2 difference was 2e-6); it is recorded, not bounded.
constexpr double kWeightTolerance = 1e-5;

// The 1-process run in dir/one and the 2-process run in dir/two end with the same weights (relative
// L2 per tensor within kWeightTolerance; the largest element difference is recorded) and log the
// same global loss at each of their `steps` logged steps.
void expect_same_run(const TempDir& dir, size_t steps) {
  double element = 0;
  const double diff =
      max_relative_difference(dir.file("one/model.safetensors"), dir.file("two/model.safetensors"), &element);
  ::testing::Test::RecordProperty("max_relative_l2_weight_difference", fmt::format("{:.2e}", diff));
  ::testing::Test::RecordProperty("max_element_weight_difference", fmt::format("{:.2e}", element));
  EXPECT_LE(diff, kWeightTolerance);
  std::vector<double> l1 = logged_losses(dir.file("one/metrics.jsonl")), l2 = logged_losses(dir.file("two/metrics.jsonl"));
  ASSERT_EQ(l1.size(), steps);
  ASSERT_EQ(l2.size(), steps);
  for (size_t i = 0; i < l1.size(); ++i) EXPECT_NEAR(l1[i], l2[i], 1e-5 * std::abs(l1[i])) << "step " << i + 1;
}

TEST(DataParallel, PretrainOnTwoProcessesMatchesOneProcess) {
  TempDir dir;
  write_corpus(dir);
  CliResult one = run_cli(pretrain_args(dir, 6) + " --out " + dir.file("one"));
  ASSERT_EQ(one.exit_code, 0) << one.err;
  const auto t0 = Clock::now();
  CliResult two = run_cli("launch -n 2 -- " + pretrain_args(dir, 6) + " --out " + dir.file("two"));
  const double two_s = seconds_since(t0);
  ASSERT_EQ(two.exit_code, 0) << two.err;
  RecordProperty("two_process_seconds", fmt::format("{:.2f}", two_s));
  // Weights, and the logged global loss of every step (only rank 0 logs).
  expect_same_run(dir, 6);
  std::vector<double> l1 = logged_losses(dir.file("one/metrics.jsonl"));
  ASSERT_FALSE(l1.empty());
  EXPECT_NE(l1.front(), l1.back()) << "the model did not train";
  EXPECT_NE(two.err.find("[rank 0] data-parallel: 2 processes"), std::string::npos) << two.err;
  EXPECT_EQ(two.err.find("[rank 1] pretrain:"), std::string::npos) << "rank 1 should not report progress";
  // The same weights differ far beyond the bound from a run one step shorter: the check can fail.
  CliResult shorter = run_cli(pretrain_args(dir, 5) + " --out " + dir.file("five"));
  ASSERT_EQ(shorter.exit_code, 0) << shorter.err;
  EXPECT_GT(max_relative_difference(dir.file("one/model.safetensors"), dir.file("five/model.safetensors")),
            100 * kWeightTolerance);
}

TEST(DataParallel, ATwoProcessCheckpointResumesOnOneProcess) {
  TempDir dir;
  write_corpus(dir);
  CliResult full = run_cli(pretrain_args(dir, 6) + " --out " + dir.file("full"));
  ASSERT_EQ(full.exit_code, 0) << full.err;
  CliResult part = run_cli("launch -n 2 -- " + pretrain_args(dir, 6) + " --stop-after 3 --out " + dir.file("part"));
  ASSERT_EQ(part.exit_code, 0) << part.err;
  EXPECT_FALSE(std::filesystem::exists(dir.file("part/model.safetensors")));
  auto state = nlohmann::json::parse(read_file(dir.file("part/checkpoints/step-00000003/state.json")));
  EXPECT_EQ(state["step"], 3);
  EXPECT_EQ(state["world_size"], 2);
  CliResult rest = run_cli(pretrain_args(dir, 6) + " --resume --out " + dir.file("part"));
  ASSERT_EQ(rest.exit_code, 0) << rest.err;
  EXPECT_LE(max_relative_difference(dir.file("full/model.safetensors"), dir.file("part/model.safetensors")),
            kWeightTolerance);
  EXPECT_EQ(logged_losses(dir.file("part/metrics.jsonl")).size(), 6u);
}

TEST(DataParallel, AGlobalBatchTheWorldSizeDoesNotDivideIsRefused) {
  TempDir dir;
  write_corpus(dir);
  CliResult r = run_cli("launch -n 2 -- " + pretrain_args(dir, 2, 3) + " --out " + dir.file("x"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("--batch 3 (the global batch) is not divisible by WORLD_SIZE 2"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("launch: rank "), std::string::npos) << r.err;
}

// Rank 1 leaves after 2 steps (it was given --stop-after 2); rank 0 fails at step 3 within the
// timeout, with an error that names rank 1. The two ranks are started by hand, torchrun style.
TEST(DataParallel, ARankThatExitsEarlyStopsTheOtherWithItsName) {
  TempDir dir;
  write_corpus(dir);
  const int port = parallel::free_tcp_port("127.0.0.1");
  const std::string env = "WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=" + std::to_string(port) +
                          " RADISTILL_DIST_TIMEOUT_S=20 ";
  const std::string cli = std::string(RAD_CLI_PATH) + " --threads 1 " + pretrain_args(dir, 50) + " --out " + dir.file("o");
  const std::string script = env + "RANK=1 " + cli + " --stop-after 2 >/dev/null 2>" + dir.file("err1") + " & " +
                             env + "RANK=0 " + cli + " >/dev/null 2>" + dir.file("err0") + "; echo $? >" +
                             dir.file("rc0") + "; wait";
  const auto t0 = Clock::now();
  ASSERT_EQ(std::system(("bash -c '" + script + "'").c_str()), 0);
  const double took = seconds_since(t0);
  const std::string err0 = read_file(dir.file("err0"));
  EXPECT_NE(std::atoi(read_file(dir.file("rc0")).c_str()), 0) << err0;
  EXPECT_NE(err0.find("rank 0 of 2: the gradient all-reduce of step 3 failed"), std::string::npos) << err0;
  EXPECT_NE(err0.find("rank 1 exited early"), std::string::npos) << err0;
  EXPECT_LT(took, 30.0);
  EXPECT_FALSE(std::filesystem::exists(dir.file("o/model.safetensors")));
}

// A rank started with other settings (here --seed) is refused by name, with the field that differs,
// and rank 0 stops too, quoting it.
TEST(DataParallel, ARankWithOtherSettingsIsRefusedByName) {
  TempDir dir;
  write_corpus(dir);
  const int port = parallel::free_tcp_port("127.0.0.1");
  const std::string env = "WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=" + std::to_string(port) +
                          " RADISTILL_DIST_TIMEOUT_S=20 ";
  const std::string cli = std::string(RAD_CLI_PATH) + " --threads 1 " + pretrain_args(dir, 5) + " --out " + dir.file("o");
  const std::string script = env + "RANK=1 " + cli + " --seed 7 >/dev/null 2>" + dir.file("err1") + " & " + env +
                             "RANK=0 " + cli + " >/dev/null 2>" + dir.file("err0") + "; echo $? >" + dir.file("rc0") +
                             "; wait $!; echo $? >" + dir.file("rc1");
  ASSERT_EQ(std::system(("bash -c '" + script + "'").c_str()), 0);
  const std::string err0 = read_file(dir.file("err0")), err1 = read_file(dir.file("err1"));
  EXPECT_NE(std::atoi(read_file(dir.file("rc0")).c_str()), 0) << err0;
  EXPECT_NE(err1.find("rank 1 of 2: the training settings differ from rank 0's (seed is 7 here, 0 on rank 0)"),
            std::string::npos)
      << err1;
  EXPECT_NE(err0.find("rank 1 failed: rank 1 of 2: the training settings differ"), std::string::npos) << err0;
  EXPECT_FALSE(std::filesystem::exists(dir.file("o/checkpoints/latest")));
}

// Rank 1 is SIGKILLed after the first checkpoint: rank 0 stops within the timeout naming it and
// leaves the last complete checkpoint; `--resume` on 2 processes then ends with the weights of an
// uninterrupted single-process run.
TEST(DataParallel, AKilledRankIsNamedAndTheRunResumesToTheUninterruptedWeights) {
  TempDir dir;
  write_corpus(dir);
  const std::string args = pretrain_args(dir, 60, 4, /*save_every=*/1);
  CliResult full = run_cli(args + " --out " + dir.file("full"));
  ASSERT_EQ(full.exit_code, 0) << full.err;
  const int port = parallel::free_tcp_port("127.0.0.1");
  const std::string env = "WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=" + std::to_string(port) +
                          " RADISTILL_DIST_TIMEOUT_S=20 ";
  const std::string out = dir.file("o");
  const std::string cli = std::string(RAD_CLI_PATH) + " --threads 1 " + args + " --out " + out;
  const std::string script = env + "RANK=1 " + cli + " >/dev/null 2>/dev/null & p1=$!; " + env + "RANK=0 " + cli +
                             " >/dev/null 2>" + dir.file("err0") + " & p0=$!; while [ ! -e " + out +
                             "/checkpoints/latest ] && kill -0 $p0 2>/dev/null; do sleep 0.01; done; sleep 0.2; "
                             "kill -9 $p1; wait $p0; echo $? >" + dir.file("rc0") + "; wait $p1; exit 0";
  const auto t0 = Clock::now();
  ASSERT_EQ(std::system(("bash -c '" + script + "'").c_str()), 0);
  EXPECT_LT(seconds_since(t0), 30.0);
  const std::string err0 = read_file(dir.file("err0"));
  EXPECT_NE(std::atoi(read_file(dir.file("rc0")).c_str()), 0) << err0;
  EXPECT_NE(err0.find("rank 0 of 2: the gradient all-reduce of step"), std::string::npos) << err0;
  EXPECT_NE(err0.find("rank 1 (pid "), std::string::npos) << err0;
  EXPECT_NE(err0.find("died without a word"), std::string::npos) << err0;
  ASSERT_FALSE(std::filesystem::exists(out + "/model.safetensors")) << "the run finished before the kill";
  CliResult rest = run_cli("launch -n 2 -- " + args + " --resume --out " + out);
  ASSERT_EQ(rest.exit_code, 0) << rest.err;
  double element = 0;
  const double diff = max_relative_difference(dir.file("full/model.safetensors"), out + "/model.safetensors", &element);
  RecordProperty("max_relative_l2_weight_difference", fmt::format("{:.2e}", diff));
  RecordProperty("max_element_weight_difference", fmt::format("{:.2e}", element));
  EXPECT_LE(diff, kWeightTolerance);
  EXPECT_EQ(logged_losses(out + "/metrics.jsonl").size(), 60u);
}

// ---------------------------------------------------------------- distill on 2 processes

// Runs `args` + dir/one in one process, then under `launch -n 2` + dir/two: both must succeed and the
// launched run must say it is data-parallel. `two` gets the launched run's output.
void run_once_and_launched(const TempDir& dir, const std::string& args, CliResult* two) {
  CliResult r = run_cli(args + dir.file("one"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  *two = run_cli("launch -n 2 -- " + args + dir.file("two"));
  ASSERT_EQ(two->exit_code, 0) << two->err;
  EXPECT_NE(two->err.find("[rank 0] data-parallel: 2 processes"), std::string::npos) << two->err;
}

// `radistill convert` of dir/teacher keeping `kept_heads` (a JSON list of [layer, head]) into dir/NAME.
void convert_teacher(const TempDir& dir, const std::string& kept_heads, const std::string& name) {
  {
    std::ofstream plan(dir.file(name + "_plan.json"));
    plan << "{\"kept_heads\": " << kept_heads << "}";
  }
  CliResult r = run_cli("convert " + dir.file("teacher") + " --plan " + dir.file(name + "_plan.json") + " --out " +
                        dir.file(name));
  ASSERT_EQ(r.exit_code, 0) << r.err;
}

TEST(DataParallel, DistillOnTwoProcessesMatchesOneProcess) {
  TempDir dir;
  write_corpus(dir);
  CliResult r = run_cli(pretrain_args(dir, 4) + " --out " + dir.file("teacher"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_NO_FATAL_FAILURE(convert_teacher(dir, "[[0, 1], [1, 2]]", "hybrid"));
  const std::string args = "distill --teacher " + dir.file("teacher") + " --student " + dir.file("hybrid") +
                           " --corpus " + dir.file("corpus.txt") +
                           " --align-steps 3 --kd-steps 3 --ce-weight 0.5 --task-share 0.5 --batch 4 --seq 32"
                           " --eval-every 1000 --log-every 1 --probe-pairs 2 --probe-examples 2 --out ";
  r = run_cli(args + dir.file("one"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = run_cli("launch -n 2 -- " + args + dir.file("two"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  expect_same_run(dir, 6);
}

// ---------------------------------------------------------------- eval on 2 processes

// The ranks share the models (model i on rank i mod 2) and gather them: eval.json equals one
// process's in every score; only the timings and the process's peak memory may differ. The decode
// timings run on rank 0 alone, for every model.
TEST(DataParallel, EvalOnTwoProcessesGivesTheSingleProcessScores) {
  TempDir dir;
  write_corpus(dir);
  CliResult r = run_cli(pretrain_args(dir, 4) + " --out " + dir.file("teacher"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  ASSERT_NO_FATAL_FAILURE(convert_teacher(dir, "[[0, 1], [1, 2]]", "hybrid"));
  ASSERT_NO_FATAL_FAILURE(convert_teacher(dir, "[]", "ssm"));
  const std::string args = "eval " + dir.file("teacher") + " " + dir.file("hybrid") + " " + dir.file("ssm") +
                           " --corpus " + dir.file("corpus.txt") +
                           " --kv-pairs 2 --examples 4 --mqar-pairs 2 --mqar-queries 1 --needle-words 10"
                           " --needle-depths 0 --phonebook-entries 2 --ppl-seq 16 --out ";
  CliResult two;
  ASSERT_NO_FATAL_FAILURE(run_once_and_launched(dir, args, &two));
  auto one_json = nlohmann::json::parse(read_file(dir.file("one/eval.json")));
  auto two_json = nlohmann::json::parse(read_file(dir.file("two/eval.json")));
  ASSERT_EQ(one_json["models"].size(), 3u);
  ASSERT_EQ(two_json["models"].size(), 3u);
  // Perplexity sums float32 log-probabilities in an order that depends on the thread count (one
  // process: all cores; a rank: cores / 2): equal within 1e-6 relative (measured on the default
  // teacher's 11 models: at most 1.2e-7), compared apart. Everything else exactly.
  auto without_timings = [](nlohmann::json m) {
    EXPECT_GT(m["decode"].value("tokens_per_s", 0.0), 0.0) << m["name"];
    m.erase("decode");
    for (auto& [length, measured] : m["cache"]["measured_fp32"].items()) measured.erase("process_peak_rss_bytes");
    m.erase("perplexity");
    m.erase("coverage_language");
    m["coverage"].erase("perplexity");
    return m;
  };
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(without_timings(one_json["models"][i]), without_timings(two_json["models"][i])) << i;
    const double ppl = one_json["models"][i]["perplexity"].get<double>();
    EXPECT_GT(ppl, 1.0);
    EXPECT_NEAR(two_json["models"][i]["perplexity"].get<double>(), ppl, 1e-6 * ppl) << i;
    EXPECT_NEAR(two_json["models"][i]["coverage_language"].get<double>(),
                one_json["models"][i]["coverage_language"].get<double>(), 1e-6)
        << i;
    // Every decode timing ran on rank 0, the hybrid's too (rank 1 scored it), with the runtime's
    // threads as in one process: the other rank waits meanwhile.
    EXPECT_EQ(two_json["models"][i]["decode"]["threads"], one_json["models"][i]["decode"]["threads"]) << i;
  }
  EXPECT_EQ(one_json["coverage_excluded_tasks"], two_json["coverage_excluded_tasks"]);
  EXPECT_EQ(one_json["settings"], two_json["settings"]);
  EXPECT_EQ(two_json["models"][1]["name"], "hybrid");
  EXPECT_TRUE(two_json["models"][1]["tasks"].contains("kv_2"));
  EXPECT_NE((two.out + two.err).find("[rank 0] wrote " + dir.file("two/eval.json")), std::string::npos) << two.err;
}

// ---------------------------------------------------------------- the head sweep on 2 processes

// The ranks share the sweep's heads and gather one ranking: the same, bit for bit, as one process's
// (each head is scored by exactly one rank, the others add exact zeros); the causal check's runs
// are shared the same way.
TEST(DataParallel, HeadSweepOnTwoProcessesGivesTheSingleProcessRanking) {
  TempDir dir;
  write_corpus(dir);
  CliResult r = run_cli(pretrain_args(dir, 4) + " --out " + dir.file("teacher"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string args = "heads " + dir.file("teacher") +
                           " --pairs 2 --examples 8 --batch 4 --budget 2 --random-draws 1 --causal-examples 4 --out ";
  CliResult two;
  ASSERT_NO_FATAL_FAILURE(run_once_and_launched(dir, args, &two));
  auto one_json = nlohmann::json::parse(read_file(dir.file("one/heads.json")));
  auto two_json = nlohmann::json::parse(read_file(dir.file("two/heads.json")));
  ASSERT_EQ(one_json["heads"].size(), 8u);  // 2 layers x 4 heads, 4 scored by each rank
  EXPECT_EQ(one_json["heads"], two_json["heads"]);  // scores, accuracies and ranks, exactly
  EXPECT_EQ(one_json["teacher_accuracy"], two_json["teacher_accuracy"]);
  // The causal check's runs are split between the ranks and gathered: the same numbers.
  EXPECT_EQ(one_json["ablate_top_k"], two_json["ablate_top_k"]);
  EXPECT_EQ(one_json["ablate_random_k"], two_json["ablate_random_k"]);
  EXPECT_EQ(one_json["causal_probe"], two_json["causal_probe"]);
  EXPECT_EQ(read_file(dir.file("one/plan.json")), read_file(dir.file("two/plan.json")));
  std::set<double> scores;
  for (const auto& h : one_json["heads"]) scores.insert(h["score"].get<double>());
  EXPECT_GT(scores.size(), 4u) << "the scores barely differ: the comparison would say little";
  // Rank 0 alone reports.
  EXPECT_NE(two.out.find("[rank 0] {"), std::string::npos) << two.out;
  EXPECT_EQ(two.out.find("[rank 1]"), std::string::npos) << two.out;
}

// ---------------------------------------------------------------- radistill run --nproc 2

// `radistill run --nproc 2`: the head sweep, the selection and every distillation run as 2
// data-parallel processes (the stage markers record the launch) and the report is complete; a batch --nproc does not divide
// is refused before any work.
TEST(DataParallel, RunPipelineWithTwoProcessesPerStage) {
  TempDir dir;
  {
    // 2000 lines: the held-out 2% must fill the evaluation's perplexity windows (256 tokens).
    std::ofstream corpus(dir.file("corpus.txt"));
    for (int i = 0; i < 2000; ++i) corpus << "And God said, Let there be light: and there was light " << i << ".\n";
  }
  CliResult r = run_cli(pretrain_args(dir, 4) + " --out " + dir.file("teacher"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto args = [&](int batch, const std::string& out) {
    return "run --teacher " + dir.file("teacher") + " --corpus " + dir.file("corpus.txt") +
           " --pairs 2 --head-examples 4 --bank-steps 2 --max-heads 2 --select-kd-steps 1 --align-steps 2 --kd-steps 2"
           " --shrink-align-steps 1 --shrink-kd-steps 1"
           " --seq 32 --eval-examples 2 --eval-kv-pairs 2 --save-every 1 --fp32 --quick --nproc 2 --batch " +
           std::to_string(batch) + " --out " + out;
  };
  r = run_cli(args(3, dir.file("refused")));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("--batch 3 is not divisible by --nproc 2"), std::string::npos) << r.err;
  EXPECT_FALSE(std::filesystem::exists(dir.file("refused/heads")));
  r = run_cli(args(2, dir.file("a")));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(read_file(dir.file("a/stages/heads.done")).find("radistill launch -n 2 -- heads"), std::string::npos);
  EXPECT_NE(read_file(dir.file("a/stages/bank.done")).find("radistill launch -n 2 -- bank"), std::string::npos);
  EXPECT_NE(read_file(dir.file("a/stages/eval.done")).find("radistill launch -n 2 -- eval"), std::string::npos);
  // The selection too: its proxy students distilled data-parallel, its probes split between the ranks.
  EXPECT_NE(read_file(dir.file("a/stages/select.done")).find("radistill launch -n 2 -- select"), std::string::npos);
  EXPECT_TRUE(std::filesystem::exists(dir.file("a/select/sufficiency.json")));
  EXPECT_TRUE(std::filesystem::exists(dir.file("a/teacher_cache/teacher.json")));
  for (const char* s : {"hybrid", "shrunk", "pure_ssm"})
    EXPECT_NE(read_file(dir.file(std::string("a/stages/distill_") + s + ".done")).find("radistill launch -n 2 -- distill"),
              std::string::npos)
        << s;
  auto report = nlohmann::json::parse(read_file(dir.file("a/report.json")));
  std::set<std::string> kinds;
  for (const auto& m : report["models"]) kinds.insert(m["kind"].get<std::string>());
  EXPECT_EQ(kinds, (std::set<std::string>{"teacher", "hybrid", "shrunk", "pure_ssm"}));
}

}  // namespace
}  // namespace rad::test
