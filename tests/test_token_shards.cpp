// Token directories (radistill tokenize-corpus): streamed text/JSONL tokenization equals the in-memory
// path, shard layout, resume, clear errors, and distillation on a memory-mapped corpus.
#include <ATen/ATen.h>

#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "rad/distill/distill.h"
#include "rad/io/checkpoint.h"
#include "rad/io/safetensors.h"
#include "rad/tokenizer/tokenizer.h"
#include "rad/train/token_shards.h"
#include "test_util.h"
#include "tiny_distill_options.h"

namespace rad::test {
namespace {

namespace fs = std::filesystem;

void write_file(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Bytes as ids plus one id per call that depends on the block's length: any difference in how lines
// are grouped into encoding blocks changes the ids.
std::vector<int64_t> block_sensitive_encode(const std::string& s) {
  std::vector<int64_t> ids;
  for (unsigned char c : s) ids.push_back(c % 60 + 2);
  ids.push_back(62 + static_cast<int64_t>(s.size() % 7));
  return ids;
}

CorpusTokenizer test_tokenizer(tasks::Encoder encode = block_sensitive_encode) {
  return {std::move(encode), "test:block-sensitive", 128, "test tokenizer"};
}

// A text file (last line without newline) and a JSONL file (multi-line, empty and trailing-newline
// texts, a blank line) plus the one text they stand for.
struct Inputs {
  std::vector<std::string> files;
  std::string equivalent_text;
};

Inputs write_inputs(const TempDir& dir, int lines) {
  std::string text;
  for (int i = 0; i < lines; ++i) text += "the earth was without form and void " + std::to_string(i) + "\n";
  text += "no newline at the end";
  write_file(dir.file("a.txt"), text);
  std::string jsonl, equivalent;
  for (int i = 0; i < lines / 2; ++i) {
    std::string t = i % 5 == 0 ? "" : i % 5 == 1 ? "two\nlines " + std::to_string(i)
                                 : i % 5 == 2    ? "ends in a newline " + std::to_string(i) + "\n"
                                                 : "and darkness " + std::to_string(i);
    jsonl += nlohmann::json({{"id", i}, {"text", t}}).dump() + "\n";
    if (i == 7) jsonl += "  \n";  // blank lines are skipped
    if (!t.empty()) equivalent += t.back() == '\n' ? t : t + "\n";
  }
  write_file(dir.file("b.jsonl"), jsonl);
  return {{dir.file("a.txt"), dir.file("b.jsonl")}, text + "\n" + equivalent};
}

TokenizeCorpusOptions options(const Inputs& in, const std::string& out, int64_t shard_tokens, double heldout) {
  TokenizeCorpusOptions o;
  o.inputs = in.files;
  o.out_dir = out;
  o.shard_tokens = shard_tokens;
  o.heldout_fraction = heldout;
  o.progress = false;
  return o;
}

TEST(TokenShards, TextAndJsonlGiveTheIdsOfTheTextTokenizedInMemory) {
  TempDir dir;
  Inputs in = write_inputs(dir, 3000);  // > 64 KiB: several encoding blocks per split
  TokenizeCorpusResult r = tokenize_corpus(options(in, dir.file("tok"), 7000, 0.1), test_tokenizer());
  TokenCorpus expected = TokenCorpus::from_text(in.equivalent_text, block_sensitive_encode, 0.1);
  TokenCorpus got = load_token_dir(dir.file("tok"), "test:block-sensitive", 128);
  EXPECT_EQ(got.train.to_vector(), expected.train.to_vector());
  EXPECT_EQ(got.heldout.to_vector(), expected.heldout.to_vector());
  EXPECT_EQ(r.train_tokens, static_cast<int64_t>(expected.train.size()));
  EXPECT_EQ(r.heldout_tokens, static_cast<int64_t>(expected.heldout.size()));
  EXPECT_GT(got.train.pieces(), 10u) << "the corpus spans many memory-mapped shards";

  // The same with a real BPE tokenizer (merges across spaces and newlines depend on the blocks).
  const std::string kjv = source_dir() + "/tests/fixtures/tokenizers/trained_kjv";
  Tokenizer bpe = Tokenizer::load(kjv);
  tasks::Encoder encode = [bpe](const std::string& s) { return bpe.encode(s, false); };
  tokenize_corpus(options(in, dir.file("bpe"), 5000, 0.05),
                  {encode, tokenizer_hash(kjv), bpe.vocab_size(), kjv});
  TokenCorpus bpe_expected = TokenCorpus::from_text(in.equivalent_text, encode, 0.05);
  TokenCorpus bpe_got = load_token_dir(dir.file("bpe"), tokenizer_hash(kjv), bpe.vocab_size());
  EXPECT_EQ(bpe_got.train.to_vector(), bpe_expected.train.to_vector());
  EXPECT_EQ(bpe_got.heldout.to_vector(), bpe_expected.heldout.to_vector());
}

TEST(TokenShards, ShardsHoldExactlyShardTokensExceptTheLastOfEachSplit) {
  TempDir dir;
  Inputs in = write_inputs(dir, 400);
  tokenize_corpus(options(in, dir.file("tok"), 1000, 0.2), test_tokenizer());
  auto index = nlohmann::json::parse(read_bytes(dir.file("tok/radistill-tokens.json")));
  ASSERT_TRUE(index["complete"].get<bool>());
  EXPECT_EQ(index["plan"]["dtype"], "uint16");
  std::map<std::string, std::vector<int64_t>> sizes;
  for (const auto& s : index["shards"]) {
    const std::string split = s["split"];
    EXPECT_EQ(s["file"], fmt::format("{}-{:05d}.npy", split, sizes[split].size()));
    sizes[split].push_back(s["tokens"].get<int64_t>());
    // A plain .npy of uint16: 128 header bytes, then the ids.
    EXPECT_EQ(static_cast<int64_t>(fs::file_size(dir.file("tok/" + s["file"].get<std::string>()))),
              128 + 2 * s["tokens"].get<int64_t>());
  }
  for (const auto& [split, v] : sizes) {
    ASSERT_FALSE(v.empty());
    for (size_t k = 0; k + 1 < v.size(); ++k) EXPECT_EQ(v[k], 1000) << split << " shard " << k;
    EXPECT_GT(v.back(), 0);
    EXPECT_LE(v.back(), 1000);
    int64_t total = 0;
    for (int64_t n : v) total += n;
    EXPECT_EQ(index["splits"][split]["tokens"].get<int64_t>(), total);
  }
  // Windows across shard boundaries read the right ids.
  TokenCorpus got = load_token_dir(dir.file("tok"), "test:block-sensitive", 128);
  std::vector<int32_t> all = got.train.to_vector();
  std::vector<int64_t> window(50);
  got.train.copy(975, 50, window.data());
  for (int i = 0; i < 50; ++i) EXPECT_EQ(window[i], all[975 + i]);
  EXPECT_RAD_ERROR(got.train.copy(all.size() - 10, 11, window.data()), "outside the sequence");
}

TEST(TokenShards, ResumeKeepsFinishedShardsAndRewritesTheRestIdentically) {
  TempDir dir;
  Inputs in = write_inputs(dir, 8000);  // 7 encoding blocks
  tokenize_corpus(options(in, dir.file("clean"), 20000, 0.1), test_tokenizer());
  auto clean_index = nlohmann::json::parse(read_bytes(dir.file("clean/radistill-tokens.json")));
  const size_t n_shards = clean_index["shards"].size();
  ASSERT_GT(n_shards, 8u);

  // A run that dies mid-way (the encoder throws on its 4th block) leaves finished shards and an
  // incomplete index; the re-run keeps them and writes the rest.
  int calls = 0;
  tasks::Encoder flaky = [&calls](const std::string& s) {
    if (++calls == 4) throw std::runtime_error("killed");
    return block_sensitive_encode(s);
  };
  EXPECT_THROW(tokenize_corpus(options(in, dir.file("crash"), 20000, 0.1), test_tokenizer(flaky)), std::runtime_error);
  auto partial = nlohmann::json::parse(read_bytes(dir.file("crash/radistill-tokens.json")));
  EXPECT_FALSE(partial["complete"].get<bool>());
  const size_t finished = partial["shards"].size();
  ASSERT_GT(finished, 0u);
  EXPECT_RAD_ERROR(load_token_dir(dir.file("crash"), "test:block-sensitive", 128), "did not finish");
  TokenizeCorpusResult r = tokenize_corpus(options(in, dir.file("crash"), 20000, 0.1), test_tokenizer());
  EXPECT_EQ(r.shards_kept, static_cast<int64_t>(finished));
  EXPECT_EQ(r.shards_written, static_cast<int64_t>(n_shards - finished));

  // A deleted shard and a truncated one: rewritten from the first bad one on.
  fs::remove(dir.file("clean/train-00003.npy"));
  fs::resize_file(dir.file("clean/train-00005.npy"), 1000);
  r = tokenize_corpus(options(in, dir.file("clean"), 20000, 0.1), test_tokenizer());
  EXPECT_EQ(r.shards_kept, 3);
  EXPECT_EQ(r.shards_written, static_cast<int64_t>(n_shards - 3));

  for (const auto& s : clean_index["shards"]) {
    const std::string f = s["file"];
    EXPECT_EQ(read_bytes(dir.file("crash/" + f)), read_bytes(dir.file("clean/" + f))) << f;
  }
  // A complete directory is left as it is.
  r = tokenize_corpus(options(in, dir.file("clean"), 20000, 0.1), test_tokenizer());
  EXPECT_EQ(r.shards_written, 0);
  EXPECT_EQ(r.shards_kept, static_cast<int64_t>(n_shards));
}

TEST(TokenShards, BadInputsShardsAndTokenizersAreClearErrors) {
  TempDir dir;
  Inputs in = write_inputs(dir, 200);
  tokenize_corpus(options(in, dir.file("tok"), 500, 0.1), test_tokenizer());
  EXPECT_RAD_ERROR(load_token_dir(dir.file("tok"), "fnv1a64:0000000000000000", 128),
                   "was tokenized with another tokenizer (test tokenizer, hash test:block-sensitive) than the "
                   "model's (hash fnv1a64:0000000000000000)");
  EXPECT_RAD_ERROR(load_token_dir(dir.file("tok"), "test:block-sensitive", 100), "vocabulary of 128, but the model has 100");
  // Other settings into the same directory.
  EXPECT_RAD_ERROR(tokenize_corpus(options(in, dir.file("tok"), 600, 0.1), test_tokenizer()),
                   "already holds tokens of other inputs or settings (shard_tokens was 500, now 600)");
  fs::resize_file(dir.file("tok/train-00001.npy"), 300);
  EXPECT_RAD_ERROR(load_token_dir(dir.file("tok"), "test:block-sensitive", 128),
                   "train-00001.npy is truncated or damaged: 300 bytes, expected 1128 (128 header + 500 tokens x 2 bytes)");
  fs::remove(dir.file("tok/train-00002.npy"));
  EXPECT_RAD_ERROR(load_token_dir(dir.file("tok"), "test:block-sensitive", 128), "train-00001.npy is truncated");

  write_file(dir.file("bad.jsonl"), "{\"text\": \"fine\"}\n{\"text\": \"also fine\"}\n{\"text\": oops}\n");
  TokenizeCorpusOptions o = options(in, dir.file("bad"), 500, 0.1);
  o.inputs = {dir.file("bad.jsonl")};
  EXPECT_RAD_ERROR(tokenize_corpus(o, test_tokenizer()), "bad.jsonl:3: not valid JSON");
  write_file(dir.file("bad.jsonl"), "{\"text\": \"fine\"}\n\n{\"body\": \"x\"}\n");
  EXPECT_RAD_ERROR(tokenize_corpus(o, test_tokenizer()),
                   "bad.jsonl:3: expected a JSON object with a string field \"text\", got an object without it");
  write_file(dir.file("bad.jsonl"), "{\"text\": 5}\n");
  EXPECT_RAD_ERROR(tokenize_corpus(o, test_tokenizer()), "bad.jsonl:1: expected a JSON object with a string field "
                                                        "\"text\", got \"text\" of type number");
  write_file(dir.file("long.txt"), "short\n" + std::string(100, 'x') + "\n");
  o.inputs = {dir.file("long.txt")};
  o.max_line_bytes = 64;
  EXPECT_RAD_ERROR(tokenize_corpus(o, test_tokenizer()), "long.txt:2: line longer than 64 bytes");
  EXPECT_RAD_ERROR(load_corpus(dir.file("bad"), source_dir() + "/tests/fixtures/tokenizers/trained_kjv",
                               block_sensitive_encode, 128, 0.1, false),
                   "is a directory without radistill-tokens.json");
}

TEST(TokenShards, RankRowsOfABatchAreThoseOfTheWholeBatch) {
  PretrainData d;
  d.encode = block_sensitive_encode;
  std::string text;
  for (int i = 0; i < 300; ++i) text += "in the beginning " + std::to_string(i) + "\n";
  d.corpus = TokenCorpus::from_text(text, d.encode, 0.1);
  TaskMix mix;
  mix.task_share = 0.5;
  mix.max_pairs = 2;
  Batch whole = make_batch(d.corpus.train, mix, d.encode, 1, 8, 32, 5, 3);
  for (int rank = 0; rank < 2; ++rank) {
    parallel::RowShard rows = parallel::shard_rows(8, rank, 2);
    Batch mine = make_batch(d.corpus.train, mix, d.encode, 1, 8, 32, 5, 3, &rows);
    EXPECT_TRUE(at::equal(mine.input_ids.narrow(0, rows.begin, rows.count),
                          whole.input_ids.narrow(0, rows.begin, rows.count)));
    EXPECT_TRUE(at::equal(mine.targets.narrow(0, rows.begin, rows.count),
                          whole.targets.narrow(0, rows.begin, rows.count)));
    EXPECT_TRUE(at::equal(mine.weights, whole.weights));
  }
}

// Distillation on a token directory of the text file trains exactly as on the text file: same ids,
// same split, same sampled windows.
TEST(TokenShards, DistillOnATokenDirectoryEqualsTheTextPath) {
  TempDir dir;
  std::string text;
  for (int i = 0; i < 300; ++i) text += "the earth was without form and void " + std::to_string(i) + "\n";
  write_file(dir.file("corpus.txt"), text);
  auto encode = [](const std::string& s) {
    std::vector<int64_t> ids;
    for (unsigned char c : s) ids.push_back(c % 60 + 2);
    return ids;
  };
  TokenizeCorpusOptions to;
  to.inputs = {dir.file("corpus.txt")};
  to.out_dir = dir.file("tok");
  to.shard_tokens = 997;  // windows cross shard boundaries
  to.heldout_fraction = 0.1;
  to.progress = false;
  tokenize_corpus(to, {encode, "test:bytes", 64, "bytes"});

  CausalLM teacher = io::load_causal_lm(fixture_model("llama_gqa"));
  auto run = [&](TokenCorpus corpus, const std::string& out) {
    PretrainData d;
    d.encode = encode;
    d.bos = 1;
    d.corpus = std::move(corpus);
    d.write_tokenizer = [](const std::string&) {};
    CausalLM student = io::load_causal_lm(fixture_model("llama_gqa"));
    {
      at::NoGradGuard no_grad;
      auto gen = at::make_generator<at::CPUGeneratorImpl>(11);
      for (auto& item : student->named_parameters())
        if (item.key().find("self_attn") != std::string::npos)
          item.value().add_(at::normal(0.0, 0.1, item.value().sizes(), gen, at::TensorOptions().dtype(at::kFloat)));
    }
    DistillOptions o = tiny_distill_options(out, 2, 100, 4);
    distill(teacher, student, o, d, [](CausalLM& m, const std::string& p) { io::save_causal_lm(m, p); });
  };
  run(TokenCorpus::from_text(text, encode, 0.1), dir.file("text"));
  TokenCorpus mapped = load_token_dir(dir.file("tok"), "test:bytes", 64);
  ASSERT_GT(mapped.train.pieces(), 5u);
  run(std::move(mapped), dir.file("dir"));
  auto a = io::SafetensorsFile::open(dir.file("text/model.safetensors"));
  auto b = io::SafetensorsFile::open(dir.file("dir/model.safetensors"));
  ASSERT_FALSE(a->entries().empty());
  for (const auto& e : a->entries()) EXPECT_TRUE(at::equal(a->tensor(e.name), b->tensor(e.name))) << e.name;
  auto losses = [](const std::string& path) {
    std::vector<nlohmann::json> out;
    std::ifstream in(path);
    for (std::string line; std::getline(in, line);) {
      auto j = nlohmann::json::parse(line);
      for (const char* k : {"loss", "heldout_perplexity"})
        if (j.contains(k)) out.push_back(j[k]);
    }
    return out;
  };
  auto la = losses(dir.file("text/metrics.jsonl"));
  EXPECT_GE(la.size(), 4u) << "4 steps";
  EXPECT_EQ(la, losses(dir.file("dir/metrics.jsonl")));
}

// The command line: tokenize-corpus, then pretrain on the token directory on one process (the text
// file's run, byte for byte) and on two (the same within float32 summation order); eval's held-out
// perplexity on it equals the text file's; a directory of another tokenizer or another held-out
// split is refused.
TEST(TokenShardsCli, PretrainOnATokenDirectoryEqualsTheTextOnOneAndTwoProcesses) {
  TempDir dir;
  {
    std::ofstream corpus(dir.file("corpus.txt"));
    for (int i = 0; i < 300; ++i) corpus << "And God said, Let there be light: and there was light " << i << ".\n";
  }
  const std::string kjv = source_dir() + "/tests/fixtures/tokenizers/trained_kjv";
  CliResult r = run_cli("tokenize-corpus " + dir.file("corpus.txt") + " --tokenizer " + kjv + " --out " +
                        dir.file("tok") + " --shard-tokens 700");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("shards written"), std::string::npos) << r.err;
  auto args = [&](const std::string& corpus, const std::string& out) {
    return "pretrain --tokenizer " + kjv + " --corpus " + corpus +
           " --d-model 32 --n-layer 2 --n-head 4 --n-head-kv 2 --seq 64 --probe-pairs 2 --probe-examples 4"
           " --max-pairs 3 --warmup 2 --lr 3e-3 --log-every 1 --eval-every 1000 --steps 4 --batch 4 --out " +
           dir.file(out);
  };
  r = run_cli(args(dir.file("corpus.txt"), "text"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = run_cli(args(dir.file("tok"), "one"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("memory-mapped the token directory"), std::string::npos) << r.err;
  EXPECT_EQ(read_bytes(dir.file("text/model.safetensors")), read_bytes(dir.file("one/model.safetensors")));
  r = run_cli("launch -n 2 -- " + args(dir.file("tok"), "two"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto a = io::SafetensorsFile::open(dir.file("one/model.safetensors"));
  auto b = io::SafetensorsFile::open(dir.file("two/model.safetensors"));
  for (const auto& e : a->entries()) {
    at::Tensor ta = a->tensor(e.name).to(at::kDouble), tb = b->tensor(e.name).to(at::kDouble);
    EXPECT_LE((ta - tb).norm().item<double>() / std::max(ta.norm().item<double>(), 1e-12), 1e-5) << e.name;
  }

  // eval's held-out perplexity on the token directory is the text file's, exactly.
  auto eval_args = [&](const std::string& corpus, const std::string& out) {
    return "eval " + dir.file("one") + " --corpus " + corpus + " --out " + dir.file(out) +
           " --kv-pairs 2 --examples 2 --mqar-pairs 2 --mqar-queries 1 --needle-words 10 --needle-depths 0"
           " --phonebook-entries 2 --ppl-seq 16";
  };
  auto perplexity = [&](const std::string& out) {
    std::ifstream in(dir.file(out) + "/eval.json");
    return nlohmann::json::parse(in).at("models").at(0).at("perplexity").get<double>();
  };
  r = run_cli(eval_args(dir.file("corpus.txt"), "eval_text"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = run_cli(eval_args(dir.file("tok"), "eval_tok"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_GT(perplexity("eval_text"), 1.0);
  EXPECT_EQ(perplexity("eval_text"), perplexity("eval_tok"));
  r = run_cli(eval_args(dir.file("tok"), "eval_other") + " --heldout-fraction 0.1");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("--heldout-fraction 0.1: the token directory"), std::string::npos) << r.err;

  r = run_cli(args(dir.file("tok"), "other") + " --heldout-fraction 0.1");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("--heldout-fraction 0.1: the token directory " + dir.file("tok") + " was split with 0.02"),
            std::string::npos)
      << r.err;
  const std::string llama2 = source_dir() + "/tests/fixtures/tokenizers/llama2";
  r = run_cli("pretrain --tokenizer " + llama2 + " --corpus " + dir.file("tok") + " --steps 1 --out " +
              dir.file("wrong"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("was tokenized with another tokenizer"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace rad::test
