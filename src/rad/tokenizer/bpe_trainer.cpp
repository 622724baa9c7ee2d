#include "rad/tokenizer/bpe_trainer.h"

#include <algorithm>
#include <chrono>
#include <nlohmann/json.hpp>
#include <queue>
#include <unordered_map>

#include "rad/core/atomic_file.h"
#include "rad/core/error.h"
#include "rad/core/log.h"
#include "rad/tokenizer/added_tokens.h"
#include "rad/tokenizer/pre_tokenizers.h"
#include "rad/tokenizer/tokenizer.h"
#include "rad/tokenizer/unicode.h"

namespace rad {
namespace {

using ojson = nlohmann::ordered_json;

uint64_t pair_key(int32_t a, int32_t b) { return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b); }
int32_t key_left(uint64_t k) { return static_cast<int32_t>(k >> 32); }
int32_t key_right(uint64_t k) { return static_cast<int32_t>(k & 0xFFFFFFFFu); }

ojson pre_tokenizer_json(const std::string& regex) {
  return ojson{{"type", "Sequence"},
               {"pretokenizers",
                {{{"type", "Split"}, {"pattern", {{"Regex", regex}}}, {"behavior", "Isolated"}, {"invert", false}},
                 {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", false}}}}};
}

class Trainer {
 public:
  explicit Trainer(const BpeTrainerOptions& o) : options_(o) {}

  void add_token(const std::string& s) {
    id_of_[s] = static_cast<int32_t>(tokens_.size());
    tokens_.push_back(s);
  }

  // Byte-level words with their counts, sorted for determinism.
  void count_words(std::string_view corpus, const std::string& regex) {
    auto pre = make_pre_tokenizer(nlohmann::json::parse(pre_tokenizer_json(regex).dump()));
    std::vector<std::string> specials = options_.special_tokens;
    std::vector<AddedToken> added;
    for (const auto& s : specials) added.push_back(AddedToken{s, 0, true});
    AddedTokenMatcher matcher(specials, added);
    std::string text = unicode::sanitize_utf8(corpus);
    std::unordered_map<std::string, int64_t> counts;
    const size_t chunk = 1 << 20;
    size_t done = 0;
    auto t0 = std::chrono::steady_clock::now();
    PieceList list;
    matcher.split(text, [&](size_t b, size_t e, int token) {
      if (token >= 0) return;
      // Chunks end after a newline followed by a non-space byte, where no regex match can straddle.
      size_t pos = b;
      while (pos < e) {
        size_t end = std::min(e, pos + chunk);
        while (end < e && !(text[end - 1] == '\n' && text[end] != ' ' && text[end] != '\n' && text[end] != '\r' &&
                            text[end] != '\t'))
          ++end;
        list.text.assign(text, pos, end - pos);
        list.pieces.assign(1, Piece{0, end - pos, pos == 0});
        pre->pre_tokenize(list);
        for (const Piece& p : list.pieces) ++counts[std::string(list.view(p))];
        done += end - pos;
        pos = end;
        if (options_.show_progress && text.size() > 8 * chunk && (done / chunk) % 16 == 0)
          log_info("train-tokenizer: pre-tokenized {:.0f}% of {:.1f} MB ({:.1f}s)", 100.0 * done / text.size(),
                   text.size() / 1e6, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      }
    });
    std::vector<std::pair<std::string, int64_t>> sorted(counts.begin(), counts.end());
    std::sort(sorted.begin(), sorted.end());
    words_.reserve(sorted.size());
    counts_.reserve(sorted.size());
    for (auto& [w, c] : sorted) {
      std::vector<int32_t> syms;
      size_t i = 0;
      while (i < w.size()) {
        size_t start = i;
        unicode::next_code_point(w, i);
        syms.push_back(id_of_.at(w.substr(start, i - start)));
      }
      words_.push_back(std::move(syms));
      counts_.push_back(c);
    }
  }

  void count_pairs() {
    for (size_t w = 0; w < words_.size(); ++w) add_pairs(static_cast<int32_t>(w), +1);
    for (const auto& [k, c] : pair_counts_) heap_.push({c, k});
  }

  // Applies merge (a, b) -> the token a+b everywhere; returns the new token's id.
  int32_t merge(int32_t a, int32_t b) {
    std::string merged = tokens_[a] + tokens_[b];
    auto found = id_of_.find(merged);
    int32_t id;
    if (found != id_of_.end()) {
      id = found->second;
    } else {
      id = static_cast<int32_t>(tokens_.size());
      add_token(merged);
    }
    merges_.emplace_back(a, b);
    uint64_t key = pair_key(a, b);
    auto where = where_.find(key);
    if (where == where_.end()) return id;
    std::vector<int32_t> affected = where->second;
    std::sort(affected.begin(), affected.end());
    affected.erase(std::unique(affected.begin(), affected.end()), affected.end());
    std::vector<uint64_t> grown;
    for (int32_t w : affected) {
      auto& syms = words_[w];
      bool has = false;
      for (size_t i = 0; i + 1 < syms.size(); ++i) has = has || (syms[i] == a && syms[i + 1] == b);
      if (!has) continue;
      add_pairs(w, -1);
      std::vector<int32_t> out;
      out.reserve(syms.size());
      for (size_t i = 0; i < syms.size(); ++i) {
        if (i + 1 < syms.size() && syms[i] == a && syms[i + 1] == b) {
          out.push_back(id);
          ++i;
        } else {
          out.push_back(syms[i]);
        }
      }
      syms.swap(out);
      add_pairs(w, +1);
      for (size_t i = 0; i + 1 < syms.size(); ++i)
        if (syms[i] == id || syms[i + 1] == id) grown.push_back(pair_key(syms[i], syms[i + 1]));
    }
    std::sort(grown.begin(), grown.end());
    grown.erase(std::unique(grown.begin(), grown.end()), grown.end());
    for (uint64_t k : grown) heap_.push({pair_counts_[k], k});
    return id;
  }

  // The most frequent pair (ties: smallest ids), or false when none reaches min_frequency.
  bool best_pair(int32_t& a, int32_t& b) {
    while (!heap_.empty()) {
      Entry top = heap_.top();
      heap_.pop();
      auto it = pair_counts_.find(top.key);
      int64_t current = it == pair_counts_.end() ? 0 : it->second;
      if (current != top.count) {
        if (current > 0) heap_.push({current, top.key});
        continue;
      }
      if (current < std::max<int64_t>(1, options_.min_frequency)) return false;
      a = key_left(top.key);
      b = key_right(top.key);
      return true;
    }
    return false;
  }

  const BpeTrainerOptions& options_;
  std::vector<std::string> tokens_;
  std::unordered_map<std::string, int32_t> id_of_;
  std::vector<std::pair<int32_t, int32_t>> merges_;
  std::vector<std::vector<int32_t>> words_;
  std::vector<int64_t> counts_;

 private:
  void add_pairs(int32_t w, int sign) {
    const auto& syms = words_[w];
    for (size_t i = 0; i + 1 < syms.size(); ++i) {
      uint64_t k = pair_key(syms[i], syms[i + 1]);
      pair_counts_[k] += sign * counts_[w];
      if (sign > 0) where_[k].push_back(w);
    }
  }

  struct Entry {
    int64_t count;
    uint64_t key;
    bool operator<(const Entry& o) const { return count != o.count ? count < o.count : key > o.key; }
  };
  std::unordered_map<uint64_t, int64_t> pair_counts_;
  std::unordered_map<uint64_t, std::vector<int32_t>> where_;
  std::priority_queue<Entry> heap_;
};

}  // namespace

TrainedTokenizer train_bpe(std::string_view corpus, const BpeTrainerOptions& options) {
  const std::string regex = options.split_regex.empty() ? std::string(kLlama3SplitRegex) : options.split_regex;
  const int64_t n_special = static_cast<int64_t>(options.special_tokens.size());
  RAD_CHECK(options.vocab_size >= 256 + n_special, "train-tokenizer: --vocab-size {} is below 256 bytes + {} special tokens",
            options.vocab_size, n_special);
  for (const auto* name : {&options.bos_token, &options.eos_token}) {
    if (name->has_value())
      RAD_CHECK(std::find(options.special_tokens.begin(), options.special_tokens.end(), **name) != options.special_tokens.end(),
                "train-tokenizer: \"{}\" must also be one of the special tokens", **name);
  }
  auto t0 = std::chrono::steady_clock::now();
  Trainer trainer(options);
  for (int b = 0; b < 256; ++b) trainer.add_token(unicode::byte_to_utf8()[b]);
  trainer.count_words(corpus, regex);
  trainer.count_pairs();
  const int64_t target = options.vocab_size - n_special;

  // Forced strings first: a left-to-right chain of merges for each.
  for (const std::string& forced : options.forced_tokens) {
    RAD_CHECK(!forced.empty(), "train-tokenizer: empty forced token");
    std::string mapped;
    for (char c : unicode::sanitize_utf8(forced)) mapped += unicode::byte_to_utf8()[static_cast<unsigned char>(c)];
    size_t i = 0;
    size_t start = i;
    unicode::next_code_point(mapped, i);
    int32_t current = trainer.id_of_.at(mapped.substr(start, i - start));
    while (i < mapped.size()) {
      start = i;
      unicode::next_code_point(mapped, i);
      int32_t next = trainer.id_of_.at(mapped.substr(start, i - start));
      auto existing = trainer.id_of_.find(trainer.tokens_[current] + trainer.tokens_[next]);
      bool have_merge = existing != trainer.id_of_.end() &&
                        std::find(trainer.merges_.begin(), trainer.merges_.end(), std::make_pair(current, next)) != trainer.merges_.end();
      current = have_merge ? existing->second : trainer.merge(current, next);
    }
  }
  RAD_CHECK(static_cast<int64_t>(trainer.tokens_.size()) <= target,
            "train-tokenizer: the forced tokens alone need {} tokens, more than --vocab-size {} allows", trainer.tokens_.size() + n_special,
            options.vocab_size);

  const int64_t forced_merges = static_cast<int64_t>(trainer.merges_.size());
  const int64_t to_learn = target - static_cast<int64_t>(trainer.tokens_.size());
  int64_t learned = 0, next_report = std::max<int64_t>(1, to_learn / 10);
  int32_t a, b;
  while (static_cast<int64_t>(trainer.tokens_.size()) < target && trainer.best_pair(a, b)) {
    trainer.merge(a, b);
    ++learned;
    if (options.show_progress && learned >= next_report) {
      log_info("train-tokenizer: {} / {} merges ({:.1f}s)", learned, to_learn,
               std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      next_report += std::max<int64_t>(1, to_learn / 10);
    }
  }
  if (static_cast<int64_t>(trainer.tokens_.size()) < target)
    log_warn("train-tokenizer: stopped at {} tokens: no pair occurs {} times or more (vocab size {} instead of {})",
             trainer.tokens_.size(), options.min_frequency, trainer.tokens_.size() + n_special, options.vocab_size);

  // tokenizer.json
  ojson vocab = ojson::object();
  for (size_t id = 0; id < trainer.tokens_.size(); ++id) vocab[trainer.tokens_[id]] = id;
  ojson merges = ojson::array();
  for (auto [l, r] : trainer.merges_) merges.push_back(trainer.tokens_[l] + " " + trainer.tokens_[r]);
  ojson added = ojson::array();
  ojson added_decoder = ojson::object();
  int64_t next_id = static_cast<int64_t>(trainer.tokens_.size());
  std::unordered_map<std::string, int64_t> special_ids;
  for (const auto& s : options.special_tokens) {
    ojson entry = {{"id", next_id}, {"content", s}, {"single_word", false}, {"lstrip", false},
                   {"rstrip", false}, {"normalized", false}, {"special", true}};
    added.push_back(entry);
    ojson dec = entry;
    dec.erase("id");
    added_decoder[std::to_string(next_id)] = dec;
    special_ids[s] = next_id++;
  }
  ojson post = {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", false}, {"use_regex", true}};
  if (options.bos_token) {
    const std::string& bos = *options.bos_token;
    ojson tmpl = {
        {"type", "TemplateProcessing"},
        {"single", {{{"SpecialToken", {{"id", bos}, {"type_id", 0}}}}, {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
        {"pair",
         {{{"SpecialToken", {{"id", bos}, {"type_id", 0}}}}, {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
          {{"SpecialToken", {{"id", bos}, {"type_id", 1}}}}, {{"Sequence", {{"id", "B"}, {"type_id", 1}}}}}},
        {"special_tokens", {{bos, {{"id", bos}, {"ids", {special_ids.at(bos)}}, {"tokens", {bos}}}}}}};
    post = ojson{{"type", "Sequence"}, {"processors", {post, tmpl}}};
  }
  ojson tok = {
      {"version", "1.0"},
      {"truncation", nullptr},
      {"padding", nullptr},
      {"added_tokens", added},
      {"normalizer", nullptr},
      {"pre_tokenizer", pre_tokenizer_json(regex)},
      {"post_processor", post},
      {"decoder", {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}, {"use_regex", true}}},
      {"model",
       {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr}, {"continuing_subword_prefix", nullptr},
        {"end_of_word_suffix", nullptr}, {"fuse_unk", false}, {"byte_fallback", false}, {"ignore_merges", true},
        {"vocab", vocab}, {"merges", merges}}}};
  ojson config = {{"tokenizer_class", "PreTrainedTokenizerFast"},
                  {"clean_up_tokenization_spaces", false},
                  {"model_max_length", 1000000000},
                  {"added_tokens_decoder", added_decoder}};
  if (options.bos_token) config["bos_token"] = *options.bos_token;
  if (options.eos_token) config["eos_token"] = *options.eos_token;

  TrainedTokenizer result;
  result.tokenizer_json = tok.dump(2) + "\n";
  result.config_json = config.dump(2) + "\n";
  result.vocab_size = next_id;
  result.n_merges = static_cast<int64_t>(trainer.merges_.size());
  result.n_words = static_cast<int64_t>(trainer.words_.size());
  if (options.show_progress)
    log_info("train-tokenizer: {} distinct words, {} merges ({} forced), vocab size {} ({:.1f}s)", result.n_words,
             result.n_merges, forced_merges, result.vocab_size,
             std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  return result;
}

TrainedTokenizer train_bpe_tokenizer(std::string_view corpus, const BpeTrainerOptions& options, const std::string& out_dir) {
  TrainedTokenizer result = train_bpe(corpus, options);
  ensure_directory(out_dir);
  write_text_atomic(out_dir + "/tokenizer.json", result.tokenizer_json);
  write_text_atomic(out_dir + "/tokenizer_config.json", result.config_json);
  Tokenizer tok = Tokenizer::load(out_dir);
  for (const std::string& forced : options.forced_tokens) {
    auto ids = tok.encode(forced, false);
    RAD_CHECK(ids.size() == 1, "train-tokenizer: forced token \"{}\" encodes to {} tokens, not 1 (the pre-tokenizer splits it?)",
              forced, ids.size());
  }
  return result;
}

}  // namespace rad
