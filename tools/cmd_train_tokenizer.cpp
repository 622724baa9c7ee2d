#include <nlohmann/json.hpp>

#include "commands.h"
#include "rad/tasks/words.h"
#include "rad/core/atomic_file.h"
#include "rad/core/error.h"
#include "rad/core/log.h"
#include "rad/tokenizer/bpe_trainer.h"

namespace rad::cli {

void register_train_tokenizer(CLI::App& app) {
  auto* cmd = app.add_subcommand("train-tokenizer",
                                 "Train a byte-level BPE tokenizer on a corpus; writes OUT/tokenizer.json and OUT/tokenizer_config.json");
  static std::string corpus, out, bos = "<|begin_of_text|>", eos = "<|end_of_text|>", force_range;
  static int64_t vocab_size = 4096, min_frequency = 2;
  static std::vector<std::string> specials, forced;
  cmd->add_option("--corpus", corpus, "UTF-8 text file to train on")->required();
  cmd->add_option("--vocab-size", vocab_size, "Vocabulary size including the 256 bytes and the special tokens")
      ->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--out", out, "Output directory")->required();
  cmd->add_option("--special-token", specials,
                  "Special token (repeatable; default: <|begin_of_text|> and <|end_of_text|>)");
  cmd->add_option("--bos-token", bos, "BOS token, added by the post-processor (empty: none)")->capture_default_str();
  cmd->add_option("--eos-token", eos, "EOS token named in tokenizer_config.json (empty: none)")->capture_default_str();
  cmd->add_option("--force-token", forced, "String that must be a single token (repeatable)");
  static bool force_key_words = false;
  cmd->add_flag("--force-key-words", force_key_words,
                "Make the retrieval tasks' 1000 key words single tokens (as they appear after a newline or quote)");
  cmd->add_option("--force-range", force_range, "Integers A-B whose decimal strings must be single tokens, e.g. 0-99");
  cmd->add_option("--min-frequency", min_frequency, "Stop merging when the best pair occurs fewer times")->capture_default_str();
  cmd->callback([] {
    BpeTrainerOptions o;
    o.vocab_size = vocab_size;
    o.min_frequency = min_frequency;
    o.special_tokens = specials.empty() ? std::vector<std::string>{"<|begin_of_text|>", "<|end_of_text|>"} : specials;
    if (!bos.empty()) o.bos_token = bos;
    if (!eos.empty()) o.eos_token = eos;
    o.forced_tokens = forced;
    if (force_key_words)
      for (const auto& w : tasks::key_words()) o.forced_tokens.push_back(w);
    if (!force_range.empty()) {
      size_t dash = force_range.find('-');
      RAD_CHECK(dash != std::string::npos && dash > 0, "--force-range \"{}\": expected A-B, e.g. 0-99", force_range);
      int64_t a = 0, b = 0;
      try {
        a = std::stoll(force_range.substr(0, dash));
        b = std::stoll(force_range.substr(dash + 1));
      } catch (const std::exception&) {
        fail("--force-range \"{}\": expected A-B with non-negative integers, e.g. 0-99", force_range);
      }
      RAD_CHECK(a >= 0 && a <= b && b - a < 100000, "--force-range \"{}\": expected 0 <= A <= B", force_range);
      for (int64_t v = a; v <= b; ++v) o.forced_tokens.push_back(std::to_string(v));
    }
    std::string text = read_text_file(corpus);
    TrainedTokenizer t = train_bpe_tokenizer(text, o, out);
    log_info("wrote {}/tokenizer.json: vocab size {}, {} merges, {} distinct words", out, t.vocab_size, t.n_merges, t.n_words);
  });
}

}  // namespace rad::cli
