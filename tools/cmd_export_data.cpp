// `radistill export-data`: writes the exact training and probe data that `radistill pretrain` would
// use as NumPy arrays, so the same recipe can be trained by another framework on other hardware
// (scripts/train_teacher_torch.py trains the default teacher from it on a GPU when one is lent).
// Task rows come from the same make_batch as pretrain (training key pool only); probe examples use
// the evaluation key pool, so a model trained on the export is scored on keys it never saw.
//
// `radistill tokenize-corpus` (registered here too: both write training data files): streams text
// and JSONL corpora of any size through a model's tokenizer into a sharded token directory that
// pretrain and distill memory-map as --corpus (format: src/rad/train/token_shards.h).
#include <filesystem>
#include <sstream>

#include "commands.h"
#include "rad/core/atomic_file.h"
#include "rad/core/error.h"
#include "rad/core/log.h"
#include "rad/core/progress.h"
#include "rad/io/npy.h"
#include "rad/tasks/words.h"
#include "rad/train/data.h"
#include "rad/train/token_shards.h"
#include "text_codec.h"

namespace rad::cli {
namespace fs = std::filesystem;

namespace {

// Examples right-padded with -1 into [n, max_len] ids plus a [n, max_len] mask of answer tokens.
std::pair<at::Tensor, at::Tensor> pack_examples(const std::vector<tasks::EncodedExample>& examples) {
  int64_t max_len = 0;
  for (const auto& e : examples) max_len = std::max<int64_t>(max_len, e.ids.size());
  at::Tensor ids = at::full({static_cast<int64_t>(examples.size()), max_len}, -1, at::kInt);
  at::Tensor answers = at::zeros({static_cast<int64_t>(examples.size()), max_len}, at::kByte);
  auto ia = ids.accessor<int32_t, 2>();
  auto aa = answers.accessor<uint8_t, 2>();
  for (size_t i = 0; i < examples.size(); ++i) {
    for (size_t t = 0; t < examples[i].ids.size(); ++t) ia[i][t] = static_cast<int32_t>(examples[i].ids[t]);
    for (const auto& [b, e] : examples[i].answers)
      for (int64_t p = b; p < e; ++p) aa[i][p] = 1;
  }
  return {ids, answers};
}

void register_tokenize_corpus(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "tokenize-corpus",
      "Tokenize text/JSONL files of any size once into sharded token files (a --corpus for pretrain and distill)");
  static TokenizeCorpusOptions o;
  static std::string tokenizer_dir;
  cmd->add_option("inputs", o.inputs,
                  "Input files, read in order: *.jsonl / *.ndjson are JSONL (the text field of each line), anything "
                  "else UTF-8 text")
      ->required();
  cmd->add_option("--tokenizer", tokenizer_dir, "Model directory with tokenizer.json (the model you will train)")
      ->required();
  cmd->add_option("--out", o.out_dir,
                  "Output directory: train-NNNNN.npy, heldout-NNNNN.npy and radistill-tokens.json; re-running with "
                  "the same arguments keeps finished shards and continues")
      ->required();
  cmd->add_option("--shard-tokens", o.shard_tokens, "Tokens per shard file")->capture_default_str();
  cmd->add_option("--heldout-fraction", o.heldout_fraction,
                  "Fraction of lines (the last ones) held out for perplexity, as pretrain/distill split text")
      ->capture_default_str();
  cmd->add_option("--text-field", o.text_field, "JSONL field holding the text")->capture_default_str();
  cmd->add_option("--max-line-bytes", o.max_line_bytes, "Longest input line accepted (bounds memory)")
      ->capture_default_str();
  cmd->callback([] {
    TextCodec codec = load_text_codec(tokenizer_dir);
    CorpusTokenizer tok{codec.encode, tokenizer_hash(tokenizer_dir), codec.tokenizer.vocab_size(), tokenizer_dir};
    TokenizeCorpusResult r = tokenize_corpus(o, tok);
    log_info("{}: {} training and {} held-out tokens ({} shards written, {} kept from an earlier run)", o.out_dir,
             r.train_tokens, r.heldout_tokens, r.shards_written, r.shards_kept);
  });
}
}  // namespace

void register_export_data(CLI::App& app) {
  register_tokenize_corpus(app);
  auto* cmd = app.add_subcommand(
      "export-data", "Write pretrain's task rows, corpus tokens and KV probes as .npy (to train elsewhere)");
  static std::string tokenizer_dir, corpus_path, out_dir, tasks_list = "mqar,kv", probe_pairs = "20,50";
  static TaskMix mix;
  static int64_t rows = 10000, seq = 512, probe_examples = 200, chunk = 256;
  static uint64_t seed = 1, probe_seed = 0;
  static double heldout = 0.02;
  cmd->add_option("--tokenizer", tokenizer_dir, "Directory with tokenizer.json")->required();
  cmd->add_option("--corpus", corpus_path, "UTF-8 text file; the last --heldout-fraction of its lines is held out")->required();
  cmd->add_option("--out", out_dir, "Output directory")->required();
  cmd->add_option("--rows", rows, "Task rows to write (each --seq + 1 tokens of packed examples)")->capture_default_str();
  cmd->add_option("--seq", seq, "Tokens per training sequence")->capture_default_str();
  cmd->add_option("--seed", seed, "Data seed (row i is pretrain's batch row for this seed)")->capture_default_str();
  cmd->add_option("--tasks", tasks_list, "Comma-separated tasks (kv, mqar, needle, phonebook, copy)")->capture_default_str();
  cmd->add_option("--min-pairs", mix.min_pairs, "Smallest dictionary")->capture_default_str();
  cmd->add_option("--max-pairs", mix.max_pairs, "Largest dictionary")->capture_default_str();
  cmd->add_option("--queries", mix.queries, "Queries per dictionary (mqar)")->capture_default_str();
  cmd->add_option("--heldout-fraction", heldout, "Fraction of corpus lines held out")->capture_default_str();
  cmd->add_option("--probe-pairs", probe_pairs, "Comma-separated KV probe sizes to export (evaluation keys)")
      ->capture_default_str();
  cmd->add_option("--probe-examples", probe_examples, "Examples per probe size")->capture_default_str();
  cmd->add_option("--probe-seed", probe_seed, "Probe generator seed (eval-tasks' --seed)")->capture_default_str();
  cmd->callback([] {
    RAD_CHECK(rows >= 1 && seq >= 8, "--rows must be >= 1 and --seq >= 8 (got {} and {})", rows, seq);
    mix.tasks = split_comma_list(tasks_list);
    mix.task_share = 1.0;
    mix.answer_weight = 2.0;  // only used to mark answers: weight 2 <=> answer token
    mix.validate();
    TextCodec codec = load_text_codec(tokenizer_dir);
    int64_t vocab = codec.tokenizer.vocab_size();
    ensure_directory(out_dir);
    log_info("tokenizing {} ...", corpus_path);
    TokenCorpus corpus = TokenCorpus::from_text(read_text_file(corpus_path), codec.encode, heldout);
    auto as_tensor = [](const TokenSeq& seq) {
      const std::vector<int32_t> v = seq.to_vector();
      return at::tensor(at::ArrayRef<int32_t>(v.data(), v.size()), at::kInt);
    };
    io::save_npy((fs::path(out_dir) / "corpus_train.npy").string(), as_tensor(corpus.train));
    io::save_npy((fs::path(out_dir) / "corpus_heldout.npy").string(), as_tensor(corpus.heldout));

    // Token ids fit int16 for vocabularies below 32768 (half the bytes of int32).
    at::ScalarType id_type = vocab <= 32767 ? at::kShort : at::kInt;
    at::Tensor ids = at::empty({rows, seq + 1}, id_type);
    at::Tensor answers = at::empty({rows, seq}, at::kByte);
    Progress progress("export-data", rows, "rows");
    for (int64_t begin = 0, step = 0; begin < rows; begin += chunk, ++step) {
      int64_t n = std::min(chunk, rows - begin);
      Batch b = make_batch(corpus.train, mix, codec.encode, codec.bos, n, seq, seed, step);
      ids.narrow(0, begin, n).copy_(at::cat({b.input_ids, b.targets.narrow(1, seq - 1, 1)}, 1));
      answers.narrow(0, begin, n).copy_(b.weights.gt(1.5));
      progress.update(begin + n);
    }
    progress.finish();
    io::save_npy((fs::path(out_dir) / "tasks_ids.npy").string(), ids);
    io::save_npy((fs::path(out_dir) / "tasks_answers.npy").string(), answers);

    nlohmann::json probes = nlohmann::json::array();
    for (const std::string& p : split_comma_list(probe_pairs)) {
      tasks::TaskOptions o;
      o.split = tasks::KeySplit::kEval;
      RAD_CHECK(!p.empty() && p.size() < 6 && p.find_first_not_of("0123456789") == std::string::npos,
                "--probe-pairs: \"{}\" is not a positive integer (expected e.g. 20,50)", p);
      o.pairs = std::stoll(p);
      std::vector<tasks::EncodedExample> encoded;
      for (const auto& ex : tasks::make_examples("kv", o, probe_examples, probe_seed))
        encoded.push_back(tasks::encode_example(ex, codec.encode, codec.bos));
      auto [pids, pans] = pack_examples(encoded);
      std::string stem = "probe_kv" + p;
      io::save_npy((fs::path(out_dir) / (stem + "_ids.npy")).string(), pids);
      io::save_npy((fs::path(out_dir) / (stem + "_answers.npy")).string(), pans);
      probes.push_back({{"pairs", o.pairs}, {"examples", probe_examples}, {"seed", probe_seed},
                        {"ids", stem + "_ids.npy"}, {"answers", stem + "_answers.npy"}});
    }
    // Token ids a trainer may relabel to augment task rows (a bijection on keys, one on values keeps
    // every row a valid example): single-token training keys and values, minus template tokens.
    auto single_tokens = [&](const std::vector<std::string>& words) {
      std::vector<int64_t> out;
      for (const auto& w : words) {
        std::vector<int64_t> ids = codec.encode(w);
        if (ids.size() == 1) out.push_back(ids[0]);
      }
      return out;
    };
    std::vector<std::string> values;
    for (int v = 0; v < 100; ++v) values.push_back(std::to_string(v));
    std::vector<int64_t> template_ids =
        codec.encode("Memorize the following dictionary:\nThe value of the key '' is :\n \n");
    nlohmann::json meta = {
        {"tokenizer", tokenizer_dir}, {"corpus", corpus_path}, {"vocab_size", vocab},
        {"bos_token_id", codec.bos ? nlohmann::json(*codec.bos) : nlohmann::json(nullptr)},
        {"eos_token_id", codec.tokenizer.eos_id() ? nlohmann::json(*codec.tokenizer.eos_id()) : nlohmann::json(nullptr)},
        {"seq", seq}, {"rows", rows}, {"seed", seed}, {"tasks", mix.tasks}, {"min_pairs", mix.min_pairs},
        {"max_pairs", mix.max_pairs}, {"queries", mix.queries}, {"heldout_fraction", heldout},
        {"corpus_train_tokens", corpus.train.size()}, {"corpus_heldout_tokens", corpus.heldout.size()},
        {"files", {{"tasks_ids", "tasks_ids.npy [rows, seq+1] token ids"},
                   {"tasks_answers", "tasks_answers.npy [rows, seq] 1 where target t (= ids[:, t+1]) is an answer"},
                   {"corpus_train", "corpus_train.npy"}, {"corpus_heldout", "corpus_heldout.npy"}}},
        {"probes", probes},
        {"train_key_token_ids", single_tokens(tasks::key_pool(tasks::KeySplit::kTrain))},
        {"value_token_ids", single_tokens(values)},
        {"template_token_ids", template_ids}};
    write_text_atomic((fs::path(out_dir) / "meta.json").string(), meta.dump(2) + "\n");
    log_info("wrote {} task rows of {} tokens, {} + {} corpus tokens, {} probe sets to {}", rows, seq + 1,
             corpus.train.size(), corpus.heldout.size(), probes.size(), out_dir);
  });
}

}  // namespace rad::cli
