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

// The retrieval recipe (src/rad/train/teacher_task_rows.h): token-level rows, answer-only loss, one example
// per row, the pairs curriculum, embedding decay groups, telemetry, determinism and exact resume.
#include <cctype>
#include <map>
#include <set>

#include "rad/tasks/words.h"
#include "rad/tokenizer/tokenizer.h"
#include "rad/train/optim.h"
#include "rad/train/teacher_task_rows.h"

namespace rad::test {
namespace {

// A word-level test encoder: letter runs that are key words or a few template/corpus words are one
// token each, numbers below 1000 one token, every other byte one token. BOS is 1.
std::vector<int64_t> word_encode(const std::string& text) {
  static const std::map<std::string, int64_t> words = [] {
    std::map<std::string, int64_t> m;
    std::vector<std::string> all = tasks::key_words();
    for (const char* w : {"Memorize", "the", "following", "dictionary", "The", "value", "of", "key", "is", "In",
                          "beginning", "God", "created", "heaven", "and", "earth"})
      all.push_back(w);
    for (const std::string& w : all) m.emplace(w, 1258 + static_cast<int64_t>(m.size()));
    return m;
  }();
  std::vector<int64_t> ids;
  for (size_t i = 0; i < text.size();) {
    unsigned char c = text[i];
    if (std::isalpha(c)) {
      size_t j = i;
      while (j < text.size() && std::isalpha(static_cast<unsigned char>(text[j]))) ++j;
      auto it = words.find(text.substr(i, j - i));
      if (it != words.end()) ids.push_back(it->second);
      else
        for (size_t k = i; k < j; ++k) ids.push_back(2 + static_cast<unsigned char>(text[k]));
      i = j;
    } else if (std::isdigit(c)) {
      size_t j = i;
      while (j < text.size() && j < i + 3 && std::isdigit(static_cast<unsigned char>(text[j]))) ++j;
      ids.push_back(258 + std::stoi(text.substr(i, j - i)));
      i = j;
    } else {
      ids.push_back(2 + c);
      ++i;
    }
  }
  return ids;
}

constexpr int64_t kWordVocab = 2300;

PretrainData word_data() {
  std::string text;
  for (int i = 0; i < 300; ++i) text += "In the beginning God created the heaven and the earth " + std::to_string(i) + ".\n";
  PretrainData d;
  d.encode = word_encode;
  d.bos = 1;
  d.corpus = TokenCorpus::from_text(text, d.encode, 0.1);
  d.write_tokenizer = [](const std::string&) {};
  return d;
}

TaskMix recipe_mix() {
  TaskMix mix;
  mix.task_share = 1.0;
  mix.copy_share = 0.25;
  mix.compact_share = 0.15;
  mix.offset_share = 0.15;
  mix.paper_share = 0.45;
  mix.min_pairs = 2;
  mix.max_pairs = 8;
  mix.queries = 4;
  mix.answer_only = true;
  mix.one_per_row = true;
  return mix;
}

// Index of `needle` in the row [from, end), or -1.
int64_t find_token(const at::Tensor& row, int64_t token, int64_t from = 0) {
  for (int64_t i = from; i < row.size(0); ++i)
    if (row[i].item<int64_t>() == token) return i;
  return -1;
}

TEST(Recipe, TokenTablesFromTheTestEncoder) {
  RecipeTokens t = RecipeTokens::build(word_encode, 1);
  EXPECT_EQ(t.train_keys.size(), tasks::key_pool(tasks::KeySplit::kTrain).size());
  EXPECT_EQ(t.heldout_keys.size(), tasks::key_pool(tasks::KeySplit::kEval).size());
  EXPECT_EQ(t.copy_pool.size(), t.train_keys.size() + t.heldout_keys.size() + 100);
  std::set<int64_t> train(t.train_keys.begin(), t.train_keys.end());
  for (int64_t k : t.heldout_keys) EXPECT_EQ(train.count(k), 0u) << "held-out key " << k << " is a training key";
  // A byte-level encoder has no single-token keys or values: the error names the piece.
  EXPECT_RAD_ERROR(RecipeTokens::build(byte_encode, 1), "as one token");
}

// With the project's real tokenizer, a paper row is token for token what its text encodes to.
TEST(Recipe, PaperRowsAreTheProbeTextTokenForToken) {
  Tokenizer tok = Tokenizer::load(source_dir() + "/models/default-teacher");
  tasks::Encoder encode = [&](const std::string& s) { return tok.encode(s, false); };
  RecipeTokens t = RecipeTokens::build(encode, std::nullopt);
  EXPECT_GE(t.train_keys.size(), 700u);
  EXPECT_GE(t.heldout_keys.size(), 150u);
  std::mt19937_64 rng(3);
  for (int64_t pairs : {2, 8, 20}) {
    RecipeRow row = paper_row(t, t.train_keys, pairs, 4, rng);
    std::string text = tok.decode(row.ids, false);
    EXPECT_EQ(text.rfind("Memorize the following dictionary:\n", 0), 0u) << text;
    EXPECT_NE(text.find("The value of the key '"), std::string::npos) << text;
    EXPECT_EQ(encode(text), row.ids) << text;
  }
}

// Paper rows: every target is the space or the value of a query's answer, and the value is the
// one the dictionary gives the queried key.
TEST(Recipe, PaperRowTargetsAreTheAnswers) {
  RecipeTokens t = RecipeTokens::build(word_encode, 1);
  std::mt19937_64 rng(5);
  for (int64_t pairs : {2, 5, 30}) {
    RecipeRow row = paper_row(t, t.train_keys, pairs, 16, rng);
    const int64_t q = std::min<int64_t>(pairs, 16);
    ASSERT_EQ(row.targets.size(), static_cast<size_t>(2 * q));
    EXPECT_EQ(row.listed.size(), static_cast<size_t>(pairs));
    for (size_t a = 0; a < row.targets.size(); a += 2) {
      int64_t i = row.targets[a];
      ASSERT_EQ(row.targets[a + 1], i + 1);
      EXPECT_EQ(row.ids[i], t.space);
      int64_t key = row.ids[i - 1 - t.query_suffix.size()];
      int64_t line = -1;
      for (int64_t j = 1 + t.header.size(); j < 1 + static_cast<int64_t>(t.header.size()) + 4 * pairs; j += 4)
        if (row.ids[j] == key) line = j;
      ASSERT_GE(line, 0) << "the queried key is in the dictionary";
      EXPECT_EQ(row.ids[line + 1], t.colon);
      EXPECT_EQ(row.ids[i + 1], row.ids[line + 2]) << "the answer is the key's value";
    }
  }
}

// One kind of recipe row per batch; checks that the weights are answer_weight exactly where that
// kind's answers are, 0 on every other task token and on the padding.
void check_answer_weights(const std::string& kind) {
  PretrainData d = word_data();
  RecipeTokens t = RecipeTokens::build(d.encode, d.bos);
  TaskMix mix = recipe_mix();
  mix.copy_share = kind == "copy";
  mix.compact_share = kind == "compact";
  mix.offset_share = kind == "offset";
  mix.paper_share = kind == "paper";
  mix.answer_weight = 2.0;
  const int64_t seq = 128;  // holds the longest row (8 pairs, 4 queries) whole
  Batch b = make_batch(d.corpus.train, mix, d.encode, d.bos, 16, seq, 7, 3, 0, &t);
  for (int64_t r = 0; r < 16; ++r) {
    // Token i of the row is input[i] (i < seq) or target[i - 1]; weight of token i is weights[i - 1].
    std::vector<int64_t> ids = {b.input_ids[r][0].item<int64_t>()};
    for (int64_t i = 0; i < seq; ++i) ids.push_back(b.targets[r][i].item<int64_t>());
    ASSERT_EQ(ids[0], 1) << "every row starts with BOS";
    std::set<int64_t> expected;  // token indices in the loss
    int64_t end = 0;             // one past the example's last token
    if (kind == "paper") {
      ASSERT_EQ(std::vector<int64_t>(ids.begin() + 1, ids.begin() + 1 + t.header.size()), t.header);
      int64_t last_suffix = t.query_suffix.back();
      for (size_t i = 1; i + 1 < ids.size(); ++i)
        if (ids[i - 1] == last_suffix && ids[i] == t.space) {
          expected.insert(i);
          expected.insert(i + 1);
          end = i + 2;
        }
    } else if (kind == "compact") {
      int64_t sep = std::find(ids.begin(), ids.end(), t.sep) - ids.begin();
      ASSERT_LT(sep, static_cast<int64_t>(ids.size()));
      int64_t pairs = (sep - 1) / 2, q = std::min<int64_t>(pairs, mix.queries);
      for (int64_t j = 0; j < q; ++j) expected.insert(sep + 2 + 2 * j);
      end = sep + 1 + 2 * q;
    } else if (kind == "copy") {
      int64_t sep = std::find(ids.begin(), ids.end(), t.sep) - ids.begin();
      int64_t k = sep - 1;
      ASSERT_TRUE(k >= 6 && k <= 19) << k;
      for (int64_t j = 0; j < k; ++j) {
        EXPECT_EQ(ids[sep + 1 + j], ids[1 + j]) << "the copy repeats the span";
        expected.insert(sep + 1 + j);
      }
      end = sep + 1 + k;
    } else {  // offset: BOS (K : V K NL)*
      int64_t j = 1;
      while (j + 4 < static_cast<int64_t>(ids.size()) && ids[j + 1] == t.colon && ids[j + 4] == t.newline) {
        EXPECT_EQ(ids[j + 3], ids[j]) << "the key is repeated after its value";
        expected.insert(j + 3);
        j += 5;
      }
      end = j;
      ASSERT_GE(j, 1 + 2 * 5) << "at least min_pairs triples";
    }
    for (int64_t i = 1; i <= seq; ++i) {
      float w = b.weights[r][i - 1].item<float>();
      if (expected.count(i)) EXPECT_EQ(w, 2.0f) << kind << " row " << r << " token " << i;
      else EXPECT_EQ(w, 0.0f) << kind << " row " << r << " token " << i;
      if (i >= end) EXPECT_EQ(ids[i], t.newline) << kind << ": padding after the one example";
    }
  }
}

TEST(Recipe, AnswerOnlyWeightsAreExactlyTheAnswers) {
  for (const char* kind : {"paper", "compact", "copy", "offset"}) {
    SCOPED_TRACE(kind);
    check_answer_weights(kind);
  }
}

TEST(Recipe, WithoutAnswerOnlyOtherTaskTokensWeighOne) {
  PretrainData d = word_data();
  RecipeTokens t = RecipeTokens::build(d.encode, d.bos);
  TaskMix mix = recipe_mix();
  mix.answer_only = false;
  mix.one_per_row = false;  // packed: no padding, every token is in the loss
  mix.answer_weight = 3.0;
  Batch b = make_batch(d.corpus.train, mix, d.encode, d.bos, 8, 128, 7, 3, 0, &t);
  EXPECT_EQ(((b.weights == 1.0f) | (b.weights == 3.0f)).all().item<bool>(), true);
  EXPECT_GT((b.weights == 3.0f).sum().item<int64_t>(), 0);
  EXPECT_GT((b.weights == 1.0f).sum().item<int64_t>(), 0);
  // Packing: a row holds more than one example (BOS appears again after position 0).
  int64_t packed_rows = 0;
  for (int64_t r = 0; r < 8; ++r) packed_rows += find_token(b.input_ids[r], 1, 1) > 0;
  EXPECT_GT(packed_rows, 0);
}

TEST(Recipe, BatchesAreAPureFunctionOfSeedStepAndStage) {
  PretrainData d = word_data();
  RecipeTokens t = RecipeTokens::build(d.encode, d.bos);
  TaskMix mix = recipe_mix();
  mix.task_share = 0.8;  // corpus windows too
  mix.pair_stages = {4, 8};
  mix.stage_steps = {0, 10};
  Batch a = make_batch(d.corpus.train, mix, d.encode, d.bos, 16, 128, 5, 17, 1, &t);
  Batch b = make_batch(d.corpus.train, mix, d.encode, d.bos, 16, 128, 5, 17, 1, &t);
  Batch c = make_batch(d.corpus.train, mix, d.encode, d.bos, 16, 128, 5, 18, 1, &t);
  Batch e = make_batch(d.corpus.train, mix, d.encode, d.bos, 16, 128, 6, 17, 1, &t);
  EXPECT_TRUE(at::equal(a.input_ids, b.input_ids));
  EXPECT_TRUE(at::equal(a.targets, b.targets));
  EXPECT_TRUE(at::equal(a.weights, b.weights));
  EXPECT_FALSE(at::equal(a.input_ids, c.input_ids));
  EXPECT_FALSE(at::equal(a.input_ids, e.input_ids));
  // The overload without tables builds them and takes the stage from the step boundaries.
  Batch f = make_batch(d.corpus.train, mix, d.encode, d.bos, 16, 128, 5, 17);
  EXPECT_TRUE(at::equal(a.input_ids, f.input_ids));
  EXPECT_TRUE(at::equal(a.weights, f.weights));
  // Corpus windows carry full loss.
  int64_t corpus_rows = 0;
  for (int64_t r = 0; r < 16; ++r)
    if (find_token(a.input_ids[r], t.header[0]) < 0 && find_token(a.input_ids[r], t.sep) < 0 &&
        find_token(a.input_ids[r], t.colon) < 0) {
      ++corpus_rows;
      EXPECT_TRUE((a.weights[r] == 1.0f).all().item<bool>());
    }
  EXPECT_GT(corpus_rows, 0);
}

// Largest number of dictionary lines of the paper rows in a batch.
int64_t most_pairs(const Batch& b, const RecipeTokens& t) {
  int64_t most = 0;
  for (int64_t r = 0; r < b.input_ids.size(0); ++r) {
    int64_t n = 0;
    for (int64_t i = 1 + t.header.size(); i + 3 < b.input_ids.size(1); i += 4) {
      if (b.input_ids[r][i + 1].item<int64_t>() != t.colon || b.input_ids[r][i + 3].item<int64_t>() != t.newline) break;
      ++n;
    }
    most = std::max(most, n);
  }
  return most;
}

TEST(Recipe, CurriculumStagesFollowTheStepBoundaries) {
  TaskMix mix = recipe_mix();
  mix.pair_stages = {3, 6, 9};
  mix.stage_steps = {0, 10, 20};
  mix.validate();
  EXPECT_EQ(mix.stages(), 3);
  for (auto [step, stage] : std::vector<std::pair<int64_t, int64_t>>{{0, 0}, {9, 0}, {10, 1}, {19, 1}, {20, 2}, {5000, 2}})
    EXPECT_EQ(mix.stage_at(step), stage) << "step " << step;
  EXPECT_EQ(mix.max_pairs_at(0), 3);
  EXPECT_EQ(mix.max_pairs_at(2), 9);
  EXPECT_EQ(mix.task_share_at(2), 1.0);
  mix.stage_corpus_share = {0, 0.1, 0.25};
  EXPECT_DOUBLE_EQ(mix.task_share_at(2), 0.75);

  PretrainData d = word_data();
  RecipeTokens t = RecipeTokens::build(d.encode, d.bos);
  TaskMix paper = recipe_mix();
  paper.copy_share = paper.compact_share = paper.offset_share = 0;
  paper.paper_share = 1;
  paper.pair_stages = {3, 9};
  paper.stage_steps = {0, 10};
  EXPECT_LE(most_pairs(make_batch(d.corpus.train, paper, d.encode, d.bos, 32, 256, 1, 9), t), 3);
  EXPECT_GT(most_pairs(make_batch(d.corpus.train, paper, d.encode, d.bos, 32, 256, 1, 10), t), 3);

  TaskMix bad = mix;
  bad.stage_steps = {5, 10, 20};
  EXPECT_RAD_ERROR(bad.validate(), "--stage-steps must start with 0");
  bad.stage_steps = {0, 20, 10};
  EXPECT_RAD_ERROR(bad.validate(), "--stage-steps must increase");
  bad.stage_steps = {0, 10};
  EXPECT_RAD_ERROR(bad.validate(), "--stage-steps needs one first step per --pair-stages entry");
  bad = mix;
  bad.pair_stages = {1, 6, 9};
  EXPECT_RAD_ERROR(bad.validate(), "--pair-stages: every stage needs at least --min-pairs");
  bad = mix;
  bad.stage_corpus_share = {0, 0.1};
  EXPECT_RAD_ERROR(bad.validate(), "--stage-corpus needs one share per stage");
  bad = mix;
  bad.paper_share = 0.2;
  EXPECT_RAD_ERROR(bad.validate(), "must sum to 1");
}

ModelConfig word_config(bool tied) {
  ModelConfig c = tiny_config();
  c.n_vocab = kWordVocab;
  c.tie_word_embeddings = tied;
  return c;
}

TEST(Optim, EmbeddingsAndNormsAreNotDecayedWhenAsked) {
  EXPECT_EQ(weight_decay_group("model.embed_tokens.weight"), "embedding");
  EXPECT_EQ(weight_decay_group("lm_head.weight"), "embedding");
  EXPECT_EQ(weight_decay_group("model.layers.0.input_layernorm.weight"), "no_decay");
  EXPECT_EQ(weight_decay_group("model.norm.weight"), "no_decay");
  EXPECT_EQ(weight_decay_group("model.layers.0.self_attn.q_proj.weight"), "decay");
  EXPECT_EQ(weight_decay_group("model.layers.0.self_attn.q_proj.bias"), "no_decay");
  // Behaviour: with zero gradients an AdamW step only decays, so decayed tensors shrink by
  // exactly (1 - lr * wd) and the others do not move.
  for (bool separate : {true, false}) {
    CausalLM model(word_config(/*tied=*/false));
    init_parameters(*model, 0.02, 1);
    const double lr = 0.1, wd = 0.5;
    auto opt = make_adamw(model, wd, lr, nullptr, separate ? std::optional<double>(0.0) : std::nullopt);
    EXPECT_EQ(opt->param_groups().size(), separate ? 3u : 2u);
    std::map<std::string, at::Tensor> before;
    for (auto& p : model->named_parameters()) {
      before[p.key()] = p.value().detach().clone();
      p.value().mutable_grad() = at::zeros_like(p.value());
    }
    opt->step();
    for (auto& p : model->named_parameters()) {
      const std::string group = weight_decay_group(p.key());
      const bool decayed = group == "decay" || (group == "embedding" && !separate);
      at::Tensor expect = decayed ? before[p.key()] * (1 - lr * wd) : before[p.key()];
      EXPECT_TRUE(at::allclose(p.value(), expect, 1e-6, 1e-9)) << p.key() << (separate ? " (separate)" : "");
    }
  }
}

PretrainOptions recipe_options(const std::string& out) {
  PretrainOptions o = tiny_options(out);
  o.model = word_config(/*tied=*/false);
  o.seq = 64;
  o.batch = 4;
  o.schedule.total = 6;
  o.mix = recipe_mix();
  o.mix.task_share = 0.75;
  o.mix.pair_stages = {3, 5};
  o.mix.stage_steps = {0, 3};
  o.embedding_weight_decay = 0.0;
  o.probe_examples = 4;
  return o;
}

void expect_same_weights(const std::string& a_dir, const std::string& b_dir) {
  auto a = io::SafetensorsFile::open(a_dir + "/model.safetensors");
  auto b = io::SafetensorsFile::open(b_dir + "/model.safetensors");
  ASSERT_EQ(a->entries().size(), b->entries().size());
  for (const auto& e : a->entries()) EXPECT_TRUE(at::equal(a->tensor(e.name), b->tensor(e.name))) << e.name;
}

std::vector<nlohmann::json> metrics_lines(const std::string& path) {
  std::vector<nlohmann::json> out;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) out.push_back(nlohmann::json::parse(line));
  return out;
}

TEST(Pretrain, RecipeRunIsDeterministicResumesExactlyAndLogsTelemetry) {
  PretrainData d = word_data();
  TempDir dir;
  PretrainOptions a = recipe_options(dir.file("a"));
  pretrain(a, d);
  PretrainOptions b = recipe_options(dir.file("b"));
  pretrain(b, d);
  expect_same_weights(a.out_dir, b.out_dir);

  PretrainOptions part = recipe_options(dir.file("part"));
  part.stop_after = 4;  // interrupted after the stage boundary at step 3
  pretrain(part, d);
  part.stop_after = 0;
  part.resume = true;
  pretrain(part, d);
  expect_same_weights(a.out_dir, part.out_dir);

  CausalLM m = io::load_causal_lm(a.out_dir);
  EXPECT_FALSE(m->config().tie_word_embeddings);
  auto lines = metrics_lines(a.out_dir + "/metrics.jsonl");
  EXPECT_EQ(metrics_lines(part.out_dir + "/metrics.jsonl").size(), lines.size());
  int64_t evals = 0;
  for (const auto& j : lines) {
    if (j.contains("loss")) {
      EXPECT_EQ(j.at("stage").get<int64_t>(), j.at("step").get<int64_t>() <= 3 ? 0 : 1) << j.dump();
      EXPECT_EQ(j.at("max_pairs").get<int64_t>(), j.at("step").get<int64_t>() <= 3 ? 3 : 5) << j.dump();
    }
    if (!j.contains("probe_accuracy")) continue;
    ++evals;
    // seq 64 holds a one-query paper row at 8 pairs, not at 20 or 50.
    for (const char* k : {"probe_train_8", "probe_train_8_listed", "probe_heldout_8", "probe_heldout_8_listed",
                          "cos_heldout_keys", "cos_train_keys"}) {
      ASSERT_TRUE(j.contains(k)) << k << " missing in " << j.dump();
      double v = j[k].get<double>();
      EXPECT_TRUE(v >= -1 && v <= 1) << k << " = " << v;
    }
    EXPECT_FALSE(j.contains("probe_train_20"));
    EXPECT_EQ(j.at("probe_skipped_pairs"), nlohmann::json({20, 50}));
    EXPECT_GT(j["cos_heldout_keys"].get<double>(), -0.5);
  }
  EXPECT_EQ(evals, 2);  // steps 3 and 6
}

// The stage reached by an adaptive advance is part of the checkpoint: a resumed run continues at
// that stage even where the step boundaries say otherwise.
TEST(Pretrain, AdaptiveCurriculumStageIsRestoredOnResume) {
  PretrainData d = word_data();
  TempDir dir;
  PretrainOptions o = recipe_options(dir.file("run"));
  o.mix.stage_steps = {0, 100};  // the boundaries alone would stay at stage 0
  o.advance_at = 1.0;            // nothing reaches 100% here: no advance by itself
  o.stop_after = 2;
  pretrain(o, d);
  std::string state_path = *latest_checkpoint(o.out_dir) + "/state.json";
  nlohmann::json state = nlohmann::json::parse(read_text_file(state_path));
  ASSERT_EQ(state.at("curriculum_stage").get<int64_t>(), 0);
  state["curriculum_stage"] = 1;
  write_text_atomic(state_path, state.dump());
  o.stop_after = 0;
  o.resume = true;
  pretrain(o, d);
  for (const auto& j : metrics_lines(o.out_dir + "/metrics.jsonl"))
    if (j.contains("loss")) EXPECT_EQ(j.at("stage").get<int64_t>(), j.at("step").get<int64_t>() <= 2 ? 0 : 1);
}

TEST(PretrainCli, RecipeFlagsAndTheirErrors) {
  TempDir dir;
  std::string corpus = dir.file("corpus.txt");
  {
    std::ofstream out(corpus);
    for (int i = 0; i < 200; ++i) out << "In the beginning God created the heaven and the earth, verse " << i << ".\n";
  }
  const std::string base = "pretrain --tokenizer " + source_dir() + "/models/default-teacher --corpus " + corpus +
                           " --d-model 32 --n-layer 1 --n-head 2 --n-head-kv 1 --d-ff 64 --max-position 256 --batch 2"
                           " --seq 160 --steps 2 --warmup 1 --eval-every 2 --probe-examples 2 --probe-pairs 4"
                           " --heldout-fraction 0.25";
  const std::string recipe = " --copy-share 0.25 --compact-share 0.15 --offset-share 0.15 --paper-share 0.45"
                             " --corpus-share 0.2 --answer-only --one-per-row --queries 4 --pair-stages 4,8"
                             " --embedding-weight-decay 0 --untied";
  CliResult ok = run_cli(base + recipe + " --stage-steps 0,1 --out " + dir.file("run"));
  ASSERT_EQ(ok.exit_code, 0) << ok.err;
  nlohmann::json config = nlohmann::json::parse(read_text_file(dir.file("run") + "/config.json"));
  EXPECT_EQ(config.at("tie_word_embeddings"), false);
  auto lines = metrics_lines(dir.file("run") + "/metrics.jsonl");
  ASSERT_FALSE(lines.empty());
  EXPECT_TRUE(lines.back().contains("probe_train_8")) << lines.back().dump();
  EXPECT_TRUE(lines.back().contains("cos_heldout_keys")) << lines.back().dump();

  CliResult bad = run_cli(base + recipe + " --stage-steps 5,10 --out " + dir.file("bad1"));
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.err.find("--stage-steps must start with 0"), std::string::npos) << bad.err;
  bad = run_cli(base + " --copy-share 0.5 --paper-share 0.2 --out " + dir.file("bad2"));
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.err.find("must sum to 1"), std::string::npos) << bad.err;
  bad = run_cli(base + " --task-share 0.5 --corpus-share 0.5 --out " + dir.file("bad3"));
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.err.find("--task-share or --corpus-share"), std::string::npos) << bad.err;
  bad = run_cli(base + " --pair-stages 4,x --stage-steps 0,1 --out " + dir.file("bad4"));
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.err.find("--pair-stages"), std::string::npos) << bad.err;
}

}  // namespace
}  // namespace rad::test

#include "rad/runtime/kernels.h"

namespace rad::test {
namespace {

// The fused KL against its libtorch form: the value (mean and data-parallel share) and the student
// gradient, with each ISA this CPU has; a vocabulary that is not a multiple of 8 and logits far
// from zero exercise the tails and the max shift.
TEST(Distill, FusedKlMatchesTheReferenceInValueAndGradient) {
  at::manual_seed(5);
  at::Tensor t = at::randn({3, 4, 37}) * 3 + 20, s0 = at::randn({3, 4, 37}) * 2 - 5;
  at::Tensor s_ref = s0.clone().requires_grad_();
  at::Tensor ref = kl_divergence_reference(t, s_ref);
  ref.backward();
  EXPECT_GT(ref.item<double>(), 0.1);
  std::vector<runtime::Isa> isas = {runtime::Isa::kPortable};
  if (runtime::detected_isa() == runtime::Isa::kAvx2) isas.push_back(runtime::Isa::kAvx2);
  const runtime::Isa before = runtime::active_isa();
  for (runtime::Isa isa : isas) {
    runtime::set_isa(isa);
    at::Tensor s = s0.clone().requires_grad_();
    at::Tensor kl = kl_divergence(t, s);
    EXPECT_NEAR(kl.item<double>(), ref.item<double>(), 1e-5 * ref.item<double>()) << runtime::isa_name(isa);
    kl.backward();
    EXPECT_LT((s.grad() - s_ref.grad()).abs().max().item<double>(), 1e-6) << runtime::isa_name(isa);
    // a rank's share: its 12 tokens' sum over a global batch of 48
    EXPECT_NEAR(kl_divergence_share(t, s0, 48).item<double>(), ref.item<double>() * 12 / 48, 1e-5);
  }
  runtime::set_isa(before);
  // a teacher that needs gradients takes the reference path
  at::Tensor tg = t.clone().requires_grad_();
  at::Tensor kl = kl_divergence(tg, s0);
  kl.backward();
  EXPECT_TRUE(tg.grad().defined());
  EXPECT_NEAR(kl.item<double>(), ref.item<double>(), 1e-6 * ref.item<double>());
}

}  // namespace
}  // namespace rad::test
