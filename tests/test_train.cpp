// Schedules, deterministic batches, and pretraining that resumes exactly.
#include <ATen/ATen.h>

#include <filesystem>
#include <fstream>

#include <csignal>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "rad/core/atomic_file.h"
#include "rad/io/checkpoint.h"
#include "rad/io/safetensors.h"
#include "rad/train/checkpoint.h"
#include "rad/train/pretrain.h"
#include "rad/train/schedule.h"
#include "test_util.h"

namespace rad::test {
namespace {

TEST(Schedule, WarmupThenWsdHoldsThenDecays) {
  LrSchedule s;
  s.kind = "wsd";
  s.peak = 1.0;
  s.warmup = 10;
  s.total = 100;
  s.min_ratio = 0.1;
  s.decay_fraction = 0.2;
  EXPECT_DOUBLE_EQ(s.at(0), 0.1);
  EXPECT_DOUBLE_EQ(s.at(9), 1.0);
  EXPECT_DOUBLE_EQ(s.at(50), 1.0);
  EXPECT_DOUBLE_EQ(s.at(79), 1.0);
  EXPECT_NEAR(s.at(89), 0.55, 1e-12);
  EXPECT_NEAR(s.at(99), 0.1, 1e-12);
}

TEST(Schedule, CosineEndsAtTheFloor) {
  LrSchedule s;
  s.kind = "cosine";
  s.peak = 2.0;
  s.warmup = 0;
  s.total = 100;
  s.min_ratio = 0.0;
  EXPECT_NEAR(s.at(0), 2.0, 1e-3);
  EXPECT_NEAR(s.at(49), 1.0, 1e-12);
  EXPECT_NEAR(s.at(99), 0.0, 1e-12);
  s.kind = "linear";
  EXPECT_RAD_ERROR(s.validate(), "--schedule must be wsd or cosine");
}

std::vector<int64_t> byte_encode(const std::string& s) {
  std::vector<int64_t> ids;
  for (unsigned char c : s) ids.push_back(c % 120 + 2);
  return ids;
}

PretrainData tiny_data() {
  std::string text;
  for (int i = 0; i < 400; ++i) text += "In the beginning God created the heaven and the earth " + std::to_string(i) + ".\n";
  PretrainData d;
  d.encode = byte_encode;
  d.bos = 1;
  d.corpus = TokenCorpus::from_text(text, d.encode, 0.1);
  d.write_tokenizer = [](const std::string&) {};
  return d;
}

TEST(Data, BatchesAreAPureFunctionOfSeedAndStep) {
  PretrainData d = tiny_data();
  TaskMix mix;
  mix.task_share = 0.5;
  mix.max_pairs = 2;
  mix.answer_weight = 3.0;
  Batch a = make_batch(d.corpus.train, mix, d.encode, d.bos, 8, 256, 5, 17);
  Batch b = make_batch(d.corpus.train, mix, d.encode, d.bos, 8, 256, 5, 17);
  Batch c = make_batch(d.corpus.train, mix, d.encode, d.bos, 8, 256, 5, 18);
  EXPECT_TRUE(at::equal(a.input_ids, b.input_ids));
  EXPECT_TRUE(at::equal(a.weights, b.weights));
  EXPECT_FALSE(at::equal(a.input_ids, c.input_ids));
  EXPECT_TRUE(at::equal(a.input_ids.narrow(1, 1, 255), a.targets.narrow(1, 0, 255)));
  EXPECT_GT((a.weights == 3.0).sum().item<int64_t>(), 0) << "task answers carry the answer weight";
  EXPECT_FALSE(d.corpus.heldout.empty());
}

ModelConfig tiny_config() {
  ModelConfig c;
  c.n_vocab = 128;
  c.d_model = 32;
  c.n_layer = 2;
  c.n_head = 4;
  c.n_head_kv = 2;
  c.d_head = 8;
  c.d_ff = 64;
  c.max_position_embeddings = 128;
  return c;
}

PretrainOptions tiny_options(const std::string& out) {
  PretrainOptions o;
  o.model = tiny_config();
  o.out_dir = out;
  o.batch = 4;
  o.seq = 48;
  o.schedule.peak = 3e-3;
  o.schedule.warmup = 2;
  o.schedule.total = 6;
  o.save_every = 2;
  o.log_every = 1;
  o.eval_every = 3;
  o.probe_pairs = 2;
  o.probe_examples = 4;
  o.ppl_windows = 2;
  o.mix.max_pairs = 3;
  o.seed = 9;
  return o;
}

std::vector<double> losses(const std::string& metrics) {
  std::vector<double> out;
  std::ifstream in(metrics);
  std::string line;
  while (std::getline(in, line)) {
    auto j = nlohmann::json::parse(line);
    if (j.contains("loss")) out.push_back(j["loss"].get<double>());
  }
  return out;
}

TEST(Pretrain, ResumeAfterInterruptionIsBitExact) {
  PretrainData d = tiny_data();
  TempDir dir;
  PretrainOptions full = tiny_options(dir.file("full"));
  pretrain(full, d);

  PretrainOptions part = tiny_options(dir.file("part"));
  part.stop_after = 3;
  pretrain(part, d);
  ASSERT_TRUE(latest_checkpoint(part.out_dir).has_value());
  EXPECT_RAD_ERROR(pretrain(tiny_options(part.out_dir), d), "pass --resume");
  part.stop_after = 0;
  part.resume = true;
  pretrain(part, d);

  auto a = io::SafetensorsFile::open(full.out_dir + "/model.safetensors");
  auto b = io::SafetensorsFile::open(part.out_dir + "/model.safetensors");
  ASSERT_EQ(a->entries().size(), b->entries().size());
  for (const auto& e : a->entries()) EXPECT_TRUE(at::equal(a->tensor(e.name), b->tensor(e.name))) << e.name;
  auto la = losses(full.out_dir + "/metrics.jsonl"), lb = losses(part.out_dir + "/metrics.jsonl");
  EXPECT_EQ(la.size(), 6u);
  EXPECT_EQ(la, lb);
  EXPECT_LT(la.back(), la.front()) << "loss goes down";
  // The final directory loads as a normal model.
  CausalLM m = io::load_causal_lm(full.out_dir);
  EXPECT_EQ(m->config().n_layer, 2);
}

TEST(Checkpoint, MetricsLogIsTruncatedToTheCheckpointStep) {
  TempDir dir;
  std::string path = dir.file("m.jsonl");
  for (int s = 1; s <= 5; ++s) append_jsonl(path, {{"step", s}, {"loss", 1.0 / s}});
  {
    std::ofstream out(path, std::ios::app);
    out << "{\"step\": 6, \"lo";  // a line cut by a crash
  }
  truncate_metrics_log(path, 3);
  EXPECT_EQ(losses(path).size(), 3u);
}

}  // namespace
}  // namespace rad::test

namespace rad::test {
namespace {

// A write that fails midway (here: the file-size limit, which fails write() like a full disk
// does) reports the file and the OS error, leaves the previous good file intact, and leaves no
// temporary file behind. Runs in a child process so the limit does not touch the test binary.
TEST(AtomicFile, AFailedWriteLeavesThePreviousFileIntact) {
  TempDir dir;
  std::string path = dir.file("checkpoint.json");
  write_text_atomic(path, "previous good content\n");
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    signal(SIGXFSZ, SIG_IGN);  // write() then fails with EFBIG instead of killing the process
    struct rlimit limit = {4096, 4096};
    setrlimit(RLIMIT_FSIZE, &limit);
    try {
      write_text_atomic(path, std::string(1 << 20, 'x'));
    } catch (const Error& e) {
      std::string m = e.what();
      _exit(m.find("cannot write " + path) != std::string::npos && m.find("too large") != std::string::npos ? 0 : 2);
    }
    _exit(3);  // no error at all
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "2: the error did not name the file and the cause; 3: no error";
  EXPECT_EQ(read_text_file(path), "previous good content\n");
  int files = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir.path())) files += e.is_regular_file();
  EXPECT_EQ(files, 1) << "a temporary file was left behind";
}

}  // namespace
}  // namespace rad::test
