// Tokenizer tests: golden ids from an independent reference (transformers.js port, see
// tests/fixtures/tokenizers/README.md) for Llama-3, Qwen2.5 and Llama-2 tokenizer.json files, plus
// decode round trips, error handling and the BPE trainer.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>

#include "rad/core/atomic_file.h"
#include "rad/core/error.h"
#include "rad/tokenizer/bpe_trainer.h"
#include "rad/tokenizer/tokenizer.h"
#include "rad/tokenizer/unicode.h"
#include "test_util.h"

namespace {

const std::string kFixtures = std::string(RAD_SOURCE_DIR) + "/tests/fixtures/tokenizers";

nlohmann::json read_json(const std::string& path) { return nlohmann::json::parse(rad::read_text_file(path)); }

// Parsed tokenizer.json / config per fixture, loaded once (the Llama-3 file is 9 MB).
const std::pair<nlohmann::json, nlohmann::json>& fixture_json(const std::string& name) {
  static std::map<std::string, std::pair<nlohmann::json, nlohmann::json>> cache;
  auto it = cache.find(name);
  if (it == cache.end()) {
    std::string dir = kFixtures + "/" + name;
    it = cache.emplace(name, std::make_pair(read_json(dir + "/tokenizer.json"), read_json(dir + "/tokenizer_config.json"))).first;
  }
  return it->second;
}

// A tokenizer for fixture `name`, with the golden file's "override" keys applied to tokenizer.json.
const rad::Tokenizer& fixture_tokenizer(const std::string& name, const nlohmann::json& override_keys = nullptr) {
  static std::map<std::string, std::unique_ptr<rad::Tokenizer>> cache;
  std::string key = name + override_keys.dump();
  auto it = cache.find(key);
  if (it == cache.end()) {
    nlohmann::json tok = fixture_json(name).first;
    if (override_keys.is_object())
      for (const auto& [k, v] : override_keys.items()) tok[k] = v;
    it = cache.emplace(key, std::make_unique<rad::Tokenizer>(rad::Tokenizer::from_json(tok, fixture_json(name).second))).first;
  }
  return *it->second;
}

std::string from_hex(const std::string& hex) {
  std::string out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) out.push_back(static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  return out;
}

// Checks every golden case; `round_trip`: decode(encode(x)) == x for valid UTF-8 input.
void check_goldens(const std::string& name, const std::string& golden_file, bool round_trip) {
  nlohmann::json golden = read_json(kFixtures + "/" + name + "/" + golden_file);
  nlohmann::json override_keys = golden.contains("override") ? golden["override"] : nlohmann::json();
  const rad::Tokenizer& tok = fixture_tokenizer(name, override_keys);
  ASSERT_GT(golden["cases"].size(), 90u);
  for (const auto& c : golden["cases"]) {
    const std::string case_name = c["name"].get<std::string>();
    SCOPED_TRACE(name + "/" + golden_file + ": " + case_name);
    const bool invalid = c.contains("hex");
    const std::string text = invalid ? from_hex(c["hex"].get<std::string>()) : c["text"].get<std::string>();
    const auto ids = c["ids"].get<std::vector<int64_t>>();
    EXPECT_EQ(tok.encode(text, false), ids);
    EXPECT_EQ(tok.encode(text, true), c["ids_special"].get<std::vector<int64_t>>());
    const std::string decoded = tok.decode(ids, false);
    EXPECT_EQ(decoded, c["decoded"].get<std::string>());
    if (round_trip && !invalid) {
      EXPECT_EQ(decoded, text);
    }
  }
}

}  // namespace

TEST(TokenizerGolden, Llama3ByteLevel) { check_goldens("llama3", "golden.json", true); }
TEST(TokenizerGolden, Llama3WithBosTemplate) { check_goldens("llama3", "golden_bos_template.json", true); }
// NFC changes a few inputs (combining accents), so the round trip is checked against the reference.
TEST(TokenizerGolden, Qwen25ByteLevelNfc) { check_goldens("qwen2_5", "golden.json", false); }
TEST(TokenizerGolden, Llama2SentencePieceBpe) { check_goldens("llama2", "golden.json", false); }
TEST(TokenizerGolden, Llama2MetaspaceFirst) { check_goldens("llama2", "golden_metaspace.json", false); }
// Output of `radistill train-tokenizer` on the KJV, encoded by the independent reference.
TEST(TokenizerGolden, TrainedKjvReadByReference) { check_goldens("trained_kjv", "golden.json", true); }

TEST(Tokenizer, LoadFromDirectoryReadsBosEos) {
  rad::Tokenizer llama2 = rad::Tokenizer::load(kFixtures + "/llama2");
  EXPECT_EQ(llama2.bos_id(), std::optional<int64_t>(1));
  EXPECT_EQ(llama2.eos_id(), std::optional<int64_t>(2));
  EXPECT_EQ(llama2.vocab_size(), 32000);
  EXPECT_EQ(llama2.token_to_id("<unk>"), std::optional<int64_t>(0));
  EXPECT_EQ(llama2.id_to_token(1), std::optional<std::string>("<s>"));
  const rad::Tokenizer& qwen = fixture_tokenizer("qwen2_5");
  EXPECT_EQ(qwen.vocab_size(), 151665);
  EXPECT_FALSE(qwen.bos_id().has_value());  // "bos_token": null
}

TEST(Tokenizer, DecodeSkipsSpecialTokens) {
  const rad::Tokenizer& tok = fixture_tokenizer("llama3");
  auto ids = tok.encode("<|begin_of_text|>Hello world<|end_of_text|>", false);
  ASSERT_EQ(ids.front(), 128000);
  ASSERT_EQ(ids.back(), 128001);
  EXPECT_EQ(tok.decode(ids, true), "Hello world");
  EXPECT_EQ(tok.decode(ids, false), "<|begin_of_text|>Hello world<|end_of_text|>");
  EXPECT_THROW(tok.decode({999999}, false), rad::Error);
}

TEST(Tokenizer, RandomUnicodeRoundTripsByteLevel) {
  const rad::Tokenizer& tok = fixture_tokenizer("llama3");
  std::mt19937 rng(7);
  const std::vector<uint32_t> ranges[] = {{0x20, 0x7E}, {0x09, 0x0D}, {0xA0, 0x24F}, {0x400, 0x4FF}, {0x4E00, 0x4FFF},
                                          {0x1F300, 0x1F64F}, {0x3040, 0x30FF}, {0x600, 0x6FF}};
  for (int trial = 0; trial < 300; ++trial) {
    std::string s;
    int n = 1 + static_cast<int>(rng() % 40);
    for (int k = 0; k < n; ++k) {
      const auto& r = ranges[rng() % 8];
      rad::unicode::append_utf8(s, r[0] + rng() % (r[1] - r[0] + 1));
    }
    EXPECT_EQ(tok.decode(tok.encode(s, false), false), s) << s;
  }
}

TEST(Tokenizer, InvalidUtf8NeverCrashes) {
  std::mt19937 rng(11);
  for (const char* name : {"llama3", "qwen2_5", "llama2"}) {
    const rad::Tokenizer& tok = fixture_tokenizer(name);
    for (int trial = 0; trial < 200; ++trial) {
      std::string s;
      int n = static_cast<int>(rng() % 24);
      for (int k = 0; k < n; ++k) s.push_back(static_cast<char>(rng() % 256));
      std::vector<int64_t> ids;
      ASSERT_NO_THROW(ids = tok.encode(s, true)) << name;
      std::string back;
      ASSERT_NO_THROW(back = tok.decode(ids, true)) << name;
      EXPECT_TRUE(rad::unicode::is_valid_utf8(back));
      if (std::string(name) == "llama3") {
        EXPECT_EQ(back, rad::unicode::sanitize_utf8(s));
      }
    }
  }
}

TEST(Tokenizer, SanitizeUtf8MatchesMaximalSubpartRule) {
  EXPECT_EQ(rad::unicode::sanitize_utf8("abc"), "abc");
  EXPECT_EQ(rad::unicode::sanitize_utf8(from_hex("e282")), "\xEF\xBF\xBD");              // truncated: one U+FFFD
  EXPECT_EQ(rad::unicode::sanitize_utf8(from_hex("c0af")), "\xEF\xBF\xBD\xEF\xBF\xBD");  // overlong: two
  EXPECT_EQ(rad::unicode::sanitize_utf8(from_hex("eda080")), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");  // surrogate
}

// Llama-3.1's post-processor (the golden_bos_template.json override): ByteLevel then a template
// that puts <|begin_of_text|> (128000) before the text.
nlohmann::json llama3_bos_post_processor() {
  return nlohmann::json::parse(rad::read_text_file(kFixtures + "/llama3/golden_bos_template.json"))["override"]["post_processor"];
}

TEST(TokenizerPrompt, Llama3TemplateAddsBosOnceByDefaultAndTheFlagTurnsItOff) {
  const rad::Tokenizer& tok = fixture_tokenizer("llama3", {{"post_processor", llama3_bos_post_processor()}});
  const std::vector<int64_t> plain = tok.encode("Hello world", false);
  ASSERT_FALSE(plain.empty());
  EXPECT_EQ(tok.special_prefix(), (std::vector<int64_t>{128000}));
  EXPECT_TRUE(tok.special_suffix().empty());
  std::vector<int64_t> with_bos = plain;
  with_bos.insert(with_bos.begin(), 128000);
  EXPECT_EQ(rad::encode_prompt(tok, "Hello world", true), with_bos);
  EXPECT_EQ(rad::encode_prompt(tok, "Hello world", false), plain);
  EXPECT_EQ(rad::prompt_prefix(tok, true), (std::vector<int64_t>{128000}));
  EXPECT_TRUE(rad::prompt_prefix(tok, false).empty());
  // A prompt that spells BOS itself gets a second one, as transformers' tokenizer(text) does.
  std::vector<int64_t> doubled = rad::encode_prompt(tok, "<|begin_of_text|>Hello world", true);
  ASSERT_GE(doubled.size(), 2u);
  EXPECT_EQ(doubled[0], 128000);
  EXPECT_EQ(doubled[1], 128000);
  // The chat path: a Llama-3 template's text starts with BOS and is encoded as is, one BOS only.
  const std::string rendered =
      "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n";
  std::vector<int64_t> chat = rad::encode_chat_prompt(tok, rendered);
  EXPECT_EQ(chat, tok.encode(rendered, false));
  ASSERT_GE(chat.size(), 2u);
  EXPECT_EQ(chat[0], 128000);
  EXPECT_EQ(std::count(chat.begin(), chat.end(), 128000), 1);
}

TEST(TokenizerPrompt, TokenizerConfigAddBosTokenDecidesOverThePostProcessor) {
  const auto& [json, config] = fixture_json("llama3");
  ASSERT_EQ(json["post_processor"]["type"], "ByteLevel");  // the first Llama-3 release: adds nothing
  EXPECT_TRUE(rad::Tokenizer::from_json(json, config).special_prefix().empty());
  // add_bos_token: true in tokenizer_config.json adds BOS to a ByteLevel-only tokenizer (llama.cpp's
  // converter writes tokenizer.ggml.add_bos_token from it) ...
  nlohmann::json add = config;
  add["add_bos_token"] = true;
  rad::Tokenizer with = rad::Tokenizer::from_json(json, add);
  EXPECT_EQ(with.special_prefix(), (std::vector<int64_t>{128000}));
  std::vector<int64_t> expected = with.encode("Hi", false);
  expected.insert(expected.begin(), 128000);
  EXPECT_EQ(rad::encode_prompt(with, "Hi", true), expected);
  EXPECT_TRUE(with.has_post_processor());
  // ... and false removes the template's BOS; EOS likewise at the end.
  nlohmann::json templ = json;
  templ["post_processor"] = llama3_bos_post_processor();
  nlohmann::json no_bos = config;
  no_bos["add_bos_token"] = false;
  no_bos["add_eos_token"] = true;
  no_bos["eos_token"] = "<|end_of_text|>";
  rad::Tokenizer eos_only = rad::Tokenizer::from_json(templ, no_bos);
  EXPECT_TRUE(eos_only.special_prefix().empty());
  EXPECT_EQ(eos_only.special_suffix(), (std::vector<int64_t>{128001}));
  EXPECT_EQ(rad::encode_prompt(eos_only, "Hi", true).back(), 128001);
  // add_bos_token: null is "not given".
  nlohmann::json null_flag = config;
  null_flag["add_bos_token"] = nullptr;
  EXPECT_TRUE(rad::Tokenizer::from_json(json, null_flag).special_prefix().empty());
  // Bad values are named.
  nlohmann::json bad = config;
  bad["add_bos_token"] = "yes";
  EXPECT_RAD_ERROR(rad::Tokenizer::from_json(json, bad), "tokenizer_config.json: \"add_bos_token\" must be true or false");
  nlohmann::json no_token = config;
  no_token.erase("bos_token");
  no_token["add_bos_token"] = true;
  EXPECT_RAD_ERROR(rad::Tokenizer::from_json(json, no_token), "add_bos_token is true but bos_token is missing");
}

TEST(TokenizerPrompt, EveryFixtureKeepsItsSpecialTokens) {
  // The rule changes nothing where tokenizer.json and tokenizer_config.json agree (all fixtures).
  EXPECT_EQ(rad::Tokenizer::load(kFixtures + "/llama2").special_prefix(), (std::vector<int64_t>{1}));
  EXPECT_TRUE(rad::Tokenizer::load(kFixtures + "/qwen2_5").special_prefix().empty());  // add_bos_token: false
  EXPECT_EQ(rad::Tokenizer::load(kFixtures + "/trained_kjv").special_prefix().size(), 1u);
}

namespace {
nlohmann::json minimal_tokenizer() {
  return nlohmann::json::parse(R"({"version": "1.0", "added_tokens": [], "normalizer": null, "pre_tokenizer": null,
    "post_processor": null, "decoder": null,
    "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": [["a", "b"]]}})");
}
std::string load_error(const nlohmann::json& tok) {
  try {
    rad::Tokenizer::from_json(tok, nullptr);
  } catch (const rad::Error& e) {
    return e.what();
  }
  return "";
}
}  // namespace

TEST(Tokenizer, MinimalModelAndPairMergeForm) {
  rad::Tokenizer tok = rad::Tokenizer::from_json(minimal_tokenizer(), nullptr);
  EXPECT_EQ(tok.encode("abab", false), (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(tok.decode({2, 0}, false), "ab a");  // no decoder: tokens joined by spaces
}

TEST(Tokenizer, UnsupportedComponentsAreNamedErrors) {
  struct Case {
    const char* key;
    const char* json;
    const char* name;
  };
  const Case cases[] = {
      {"normalizer", R"({"type": "Precompiled", "precompiled_charsmap": ""})", "Precompiled"},
      {"pre_tokenizer", R"({"type": "BertPreTokenizer"})", "BertPreTokenizer"},
      {"decoder", R"({"type": "WordPiece", "prefix": "##"})", "WordPiece"},
      {"post_processor", R"({"type": "FancyProcessing"})", "FancyProcessing"},
      {"pre_tokenizer", R"({"type": "Sequence", "pretokenizers": [{"type": "UnicodeScripts"}]})", "UnicodeScripts"},
  };
  for (const auto& c : cases) {
    nlohmann::json tok = minimal_tokenizer();
    tok[c.key] = nlohmann::json::parse(c.json);
    std::string message = load_error(tok);
    EXPECT_NE(message.find(c.name), std::string::npos) << c.key << ": " << message;
    EXPECT_NE(message.find("unsupported"), std::string::npos) << message;
  }
  nlohmann::json unigram = minimal_tokenizer();
  unigram["model"] = {{"type", "Unigram"}, {"vocab", nlohmann::json::array()}};
  EXPECT_NE(load_error(unigram).find("Unigram"), std::string::npos);
}

TEST(Tokenizer, AddedTokenStripFlags) {
  nlohmann::json tok = nlohmann::json::parse(R"({"added_tokens": [
      {"id": 3, "content": "<m>", "lstrip": true, "rstrip": true, "single_word": false, "normalized": false, "special": true}],
    "normalizer": null, "pre_tokenizer": {"type": "WhitespaceSplit"}, "post_processor": null, "decoder": null,
    "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]}})");
  rad::Tokenizer t = rad::Tokenizer::from_json(tok, nullptr);
  EXPECT_EQ(t.encode("ab  <m>  a", false), (std::vector<int64_t>{2, 3, 0}));
}

namespace {
std::string training_corpus() {
  std::string corpus;
  const char* lines[] = {"In the beginning God created the heaven and the earth.",
                         "And the earth was without form, and void; and darkness was upon the face of the deep.",
                         "And God said, Let there be light: and there was light.",
                         "The quick brown fox jumps over the lazy dog; the dog sleeps.",
                         "Numbers like 12, 345 and 6789 appear in verses 1:1 through 50:26."};
  for (int rep = 0; rep < 40; ++rep)
    for (const char* l : lines) corpus += std::string(l) + " (" + std::to_string(rep * 7 % 113) + ")\n";
  corpus += "Привет мир 日本語 😀 café\n";
  return corpus;
}

rad::BpeTrainerOptions trainer_options() {
  rad::BpeTrainerOptions o;
  o.vocab_size = 450;
  o.special_tokens = {"<|begin_of_text|>", "<|end_of_text|>"};
  o.bos_token = "<|begin_of_text|>";
  o.eos_token = "<|end_of_text|>";
  for (int v = 0; v < 100; ++v) o.forced_tokens.push_back(std::to_string(v));
  o.show_progress = false;
  return o;
}
}  // namespace

TEST(TokenizerTrainer, DeterministicAndValidHfFormat) {
  rad::TrainedTokenizer a = rad::train_bpe(training_corpus(), trainer_options());
  rad::TrainedTokenizer b = rad::train_bpe(training_corpus(), trainer_options());
  EXPECT_EQ(a.tokenizer_json, b.tokenizer_json);
  EXPECT_EQ(a.config_json, b.config_json);
  EXPECT_EQ(a.vocab_size, 450);

  nlohmann::json j = nlohmann::json::parse(a.tokenizer_json);
  for (const char* key : {"version", "truncation", "padding", "added_tokens", "normalizer", "pre_tokenizer", "post_processor",
                          "decoder", "model"})
    EXPECT_TRUE(j.contains(key)) << key;
  const auto& model = j["model"];
  EXPECT_EQ(model["type"], "BPE");
  for (const char* key : {"dropout", "unk_token", "continuing_subword_prefix", "end_of_word_suffix", "fuse_unk", "byte_fallback",
                          "vocab", "merges"})
    EXPECT_TRUE(model.contains(key)) << key;
  // Ids 0..n-1 are unique; every merge joins two vocabulary tokens into a third.
  std::map<int64_t, std::string> by_id;
  for (const auto& [token, id] : model["vocab"].items()) EXPECT_TRUE(by_id.emplace(id.get<int64_t>(), token).second);
  EXPECT_EQ(by_id.size(), static_cast<size_t>(450 - 2));
  EXPECT_EQ(by_id.rbegin()->first, 450 - 3);
  for (const auto& m : model["merges"]) {
    std::string s = m.get<std::string>();
    size_t space = s.find(' ');
    ASSERT_NE(space, std::string::npos);
    EXPECT_TRUE(model["vocab"].contains(s.substr(0, space)));
    EXPECT_TRUE(model["vocab"].contains(s.substr(space + 1)));
    EXPECT_TRUE(model["vocab"].contains(s.substr(0, space) + s.substr(space + 1)));
  }
  ASSERT_EQ(j["added_tokens"].size(), 2u);
  EXPECT_EQ(j["added_tokens"][0]["id"], 448);
  EXPECT_EQ(j["added_tokens"][0]["special"], true);
  nlohmann::json config = nlohmann::json::parse(a.config_json);
  EXPECT_EQ(config["bos_token"], "<|begin_of_text|>");
  EXPECT_EQ(config["eos_token"], "<|end_of_text|>");
}

TEST(TokenizerTrainer, OutputLoadsForcedTokensAreSingleAndRoundTrips) {
  std::string dir = (std::filesystem::temp_directory_path() / ("rad_tok_train_" + std::to_string(::getpid()))).string();
  std::string corpus = training_corpus();
  rad::train_bpe_tokenizer(corpus, trainer_options(), dir);
  rad::Tokenizer tok = rad::Tokenizer::load(dir);
  EXPECT_EQ(tok.vocab_size(), 450);
  for (int v = 0; v < 100; ++v) {
    std::string s = std::to_string(v);
    auto ids = tok.encode(s, false);
    ASSERT_EQ(ids.size(), 1u) << s;
    // Also inside text, where the Llama-3 regex isolates digit runs of up to three.
    auto in_text = tok.encode("value " + s + ".", false);
    EXPECT_NE(std::find(in_text.begin(), in_text.end(), ids[0]), in_text.end()) << s;
  }
  EXPECT_EQ(tok.bos_id(), std::optional<int64_t>(448));
  EXPECT_EQ(tok.eos_id(), std::optional<int64_t>(449));
  auto ids = tok.encode(corpus, true);
  EXPECT_EQ(ids.front(), 448);
  EXPECT_LT(ids.size(), corpus.size() / 2);  // it learned something
  EXPECT_EQ(tok.decode(ids, true), corpus);
  EXPECT_EQ(tok.decode(tok.encode("unseen: Ωmega ﬁne 🦀 <|end_of_text|>", false), false), "unseen: Ωmega ﬁne 🦀 <|end_of_text|>");
  std::filesystem::remove_all(dir);
}

TEST(TokenizerTrainer, TooSmallVocabIsAnError) {
  rad::BpeTrainerOptions o = trainer_options();
  o.vocab_size = 300;  // 256 bytes + 2 specials + the 90 merges "10".."99" need more
  EXPECT_THROW(rad::train_bpe(training_corpus(), o), rad::Error);
}

TEST(TokenizerCli, TokenizeTextAndDecode) {
  std::string dir = kFixtures + "/llama2";
  std::string cmd = std::string(RAD_CLI_PATH) + " -q tokenize " + dir + " --text 'Hello world' --add-special-tokens";
  FILE* p = ::popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  char buf[4096];
  std::string out;
  while (size_t n = std::fread(buf, 1, sizeof(buf), p)) out.append(buf, n);
  ASSERT_EQ(::pclose(p), 0) << out;
  EXPECT_EQ(nlohmann::json::parse(out).get<std::vector<int64_t>>(), (std::vector<int64_t>{1, 22557, 1526}));
  cmd = std::string(RAD_CLI_PATH) + " -q tokenize " + dir + " --decode --skip-special-tokens --text '[1, 22557, 1526]'";
  p = ::popen(cmd.c_str(), "r");
  out.clear();
  while (size_t n = std::fread(buf, 1, sizeof(buf), p)) out.append(buf, n);
  ASSERT_EQ(::pclose(p), 0) << out;
  EXPECT_EQ(out, "Hello world\n");
}

namespace {
std::string run_command(const std::string& cmd, int* status) {
  FILE* p = ::popen(cmd.c_str(), "r");
  std::string out;
  if (!p) {
    *status = -1;
    return out;
  }
  char buf[4096];
  while (size_t n = std::fread(buf, 1, sizeof(buf), p)) out.append(buf, n);
  *status = ::pclose(p);
  return out;
}

// A 64-token character-level SentencePiece-style tokenizer matching the tiny llama_gqa fixture's
// vocabulary size, so that forward/generate --text can run on it.
nlohmann::json tiny_tokenizer() {
  nlohmann::json vocab = {{"<unk>", 0}, {"<s>", 1}, {"</s>", 2}};
  int id = 3;
  for (char c = 'a'; c <= 'z'; ++c) vocab[std::string(1, c)] = id++;
  vocab["\xE2\x96\x81"] = id++;
  for (char c = '0'; c <= '9'; ++c) vocab[std::string(1, c)] = id++;
  for (char c = 'A'; id < 64; ++c) vocab[std::string(1, c)] = id++;
  nlohmann::json added = nlohmann::json::array();
  for (int k = 0; k < 3; ++k)
    added.push_back({{"id", k}, {"content", k == 0 ? "<unk>" : k == 1 ? "<s>" : "</s>"}, {"single_word", false},
                     {"lstrip", false}, {"rstrip", false}, {"normalized", false}, {"special", true}});
  return {{"version", "1.0"}, {"truncation", nullptr}, {"padding", nullptr}, {"added_tokens", added},
          {"normalizer", nullptr},
          {"pre_tokenizer", {{"type", "Metaspace"}, {"replacement", "\xE2\x96\x81"}, {"prepend_scheme", "first"}, {"split", false}}},
          {"post_processor", nlohmann::json::parse(R"({"type": "TemplateProcessing",
              "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
              "pair": [], "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}})")},
          {"decoder", {{"type", "Metaspace"}, {"replacement", "\xE2\x96\x81"}, {"prepend_scheme", "first"}, {"split", false}}},
          {"model", {{"type", "BPE"}, {"unk_token", "<unk>"}, {"fuse_unk", true}, {"byte_fallback", false}, {"vocab", vocab},
                     {"merges", nlohmann::json::array()}}}};
}
}  // namespace

TEST(TokenizerCli, GenerateAndForwardTakeText) {
  namespace fs = std::filesystem;
  fs::path dir = fs::temp_directory_path() / ("rad_tok_model_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  fs::path model = fs::path(RAD_SOURCE_DIR) / "tests/fixtures/models/llama_gqa";
  fs::copy_file(model / "config.json", dir / "config.json", fs::copy_options::overwrite_existing);
  fs::copy_file(model / "model.safetensors", dir / "model.safetensors", fs::copy_options::overwrite_existing);
  rad::write_text_atomic((dir / "tokenizer.json").string(), tiny_tokenizer().dump());
  rad::write_text_atomic((dir / "tokenizer_config.json").string(), R"({"bos_token": "<s>", "eos_token": "</s>"})");
  rad::Tokenizer tok = rad::Tokenizer::load(dir.string());
  auto prompt = tok.encode("hello world", true);
  ASSERT_EQ(prompt.size(), 13u);  // <s> ▁ h e l l o ▁ w o r l d (no merges)
  EXPECT_EQ(prompt[0], 1);

  const std::string cli = std::string(RAD_CLI_PATH) + " -q ";
  int status = 0;
  std::string ids_json = run_command(cli + "generate " + dir.string() + " --ignore-eos --max-new-tokens 6 --token-ids " +
                                         [&] {
                                           std::string s;
                                           for (size_t i = 0; i < prompt.size(); ++i) s += (i ? "," : "") + std::to_string(prompt[i]);
                                           return s;
                                         }(),
                                     &status);
  ASSERT_EQ(status, 0) << ids_json;
  auto new_ids = nlohmann::json::parse(ids_json).get<std::vector<int64_t>>();
  ASSERT_EQ(new_ids.size(), 6u);
  std::string text_out = run_command(cli + "generate " + dir.string() + " --ignore-eos --max-new-tokens 6 --text 'hello world'", &status);
  ASSERT_EQ(status, 0) << text_out;
  std::vector<int64_t> all = prompt;
  all.insert(all.end(), new_ids.begin(), new_ids.end());
  std::string full = tok.decode(all, true), prompt_text = tok.decode(prompt, true);
  ASSERT_EQ(full.compare(0, prompt_text.size(), prompt_text), 0);
  EXPECT_EQ(text_out, full.substr(prompt_text.size()) + "\n");

  run_command(cli + "forward " + dir.string() + " --token-ids 1,29,10,7", &status);
  ASSERT_EQ(status, 0);
  std::string fwd_text = run_command(cli + "forward " + dir.string() + " --text 'hello'", &status);
  ASSERT_EQ(status, 0);
  EXPECT_EQ(tok.encode("hello", true), (std::vector<int64_t>{1, 29, 10, 7, 14, 14, 17}));
  EXPECT_EQ(nlohmann::json::parse(fwd_text)["tokens"], 7);
  run_command(cli + "forward " + dir.string() + " --text x --token-ids 1 2>&1", &status);
  EXPECT_NE(status, 0);  // exactly one of the two
  fs::remove_all(dir);
}

namespace {
// tiny_tokenizer() in the Llama-3 layout: <|begin_of_text|> / <|end_of_text|> as ids 1 / 2 and a
// Sequence[ByteLevel, TemplateProcessing] post-processor that puts <|begin_of_text|> first.
nlohmann::json tiny_llama3_style_tokenizer() {
  nlohmann::json tok = tiny_tokenizer();
  auto& vocab = tok["model"]["vocab"];
  vocab.erase("<s>");
  vocab.erase("</s>");
  vocab["<|begin_of_text|>"] = 1;
  vocab["<|end_of_text|>"] = 2;
  tok["added_tokens"][1]["content"] = "<|begin_of_text|>";
  tok["added_tokens"][2]["content"] = "<|end_of_text|>";
  tok["post_processor"] = nlohmann::json::parse(R"({"type": "Sequence", "processors": [
      {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true},
      {"type": "TemplateProcessing",
       "single": [{"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
       "pair": [], "special_tokens": {"<|begin_of_text|>": {"id": "<|begin_of_text|>", "ids": [1], "tokens": ["<|begin_of_text|>"]}}}]})");
  return tok;
}

// The integer after `key` (e.g. "prompt_tokens=") in `text`, or -1.
int64_t field_after(const std::string& text, const std::string& key) {
  size_t at = text.find(key);
  return at == std::string::npos ? -1 : std::stoll(text.substr(at + key.size()));
}
}  // namespace

// generate --text, chat and bench encode prompts by one rule (rad::encode_prompt / prompt_prefix):
// BOS by default, none with --no-special-tokens (serve: tests/test_serve.cpp).
TEST(TokenizerCli, GenerateChatAndBenchAgreeOnSpecialTokens) {
  namespace fs = std::filesystem;
  fs::path dir = fs::temp_directory_path() / ("rad_tok_special_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  fs::path model = fs::path(RAD_SOURCE_DIR) / "tests/fixtures/models/llama_gqa";
  fs::copy_file(model / "config.json", dir / "config.json", fs::copy_options::overwrite_existing);
  fs::copy_file(model / "model.safetensors", dir / "model.safetensors", fs::copy_options::overwrite_existing);
  rad::write_text_atomic((dir / "tokenizer.json").string(), tiny_llama3_style_tokenizer().dump());
  rad::write_text_atomic((dir / "tokenizer_config.json").string(),
                         R"({"bos_token": "<|begin_of_text|>", "eos_token": "<|end_of_text|>"})");
  rad::Tokenizer tok = rad::Tokenizer::load(dir.string());
  ASSERT_EQ(tok.special_prefix(), (std::vector<int64_t>{1}));
  const int64_t n_plain = static_cast<int64_t>(tok.encode("hello world", false).size());
  ASSERT_EQ(n_plain, 12);  // ▁ h e l l o ▁ w o r l d

  const std::string cli = std::string(RAD_CLI_PATH) + " -q ";
  const std::string model_dir = dir.string();
  int status = 0;
  for (bool off : {false, true}) {
    SCOPED_TRACE(off ? "--no-special-tokens" : "default");
    const std::string flag = off ? " --no-special-tokens" : "";
    const int64_t expected = n_plain + (off ? 0 : 1);
    std::string gen = run_command(cli + "generate " + model_dir + " --ignore-eos --max-new-tokens 2 --stats --text 'hello world'" +
                                      flag + " 2>&1",
                                  &status);
    ASSERT_EQ(status, 0) << gen;
    EXPECT_EQ(field_after(gen, "prompt_tokens="), expected) << gen;
    // chat: the first line is the conversation's start ("hello world\n": the newline is <unk>); the
    // session holds the prompt after a one-token reply (the reply token is not fed back yet).
    std::string chat = run_command("printf 'hello world\\n' | " + cli + "chat " + model_dir +
                                       " --max-new-tokens 1 --stats" + flag + " 2>&1",
                                   &status);
    ASSERT_EQ(status, 0) << chat;
    EXPECT_EQ(field_after(chat, "length="), expected + 1) << chat;
    std::string bench = run_command(cli + "bench " + model_dir + " --prompt 8 --gen 1 --json" + flag, &status);
    ASSERT_EQ(status, 0) << bench;
    EXPECT_EQ(nlohmann::json::parse(bench)[0]["prompt_prefix"],
              off ? nlohmann::json::array() : nlohmann::json::array({1}));
  }
  fs::remove_all(dir);
}
