// Retrieval task generators and the scorer.
#include <ATen/ATen.h>

#include <algorithm>
#include <fstream>
#include <set>

#include "rad/eval/suite.h"
#include "rad/io/checkpoint.h"
#include "rad/tasks/scorer.h"
#include "rad/tasks/task.h"
#include "test_util.h"

namespace rad::test {
namespace {

using tasks::KeySplit;
using tasks::TaskOptions;

TEST(Tasks, KeyPoolsAreDisjointAndDistinct) {
  const auto& train = tasks::key_pool(KeySplit::kTrain);
  const auto& eval = tasks::key_pool(KeySplit::kEval);
  EXPECT_EQ(train.size(), 800u);
  EXPECT_EQ(eval.size(), 200u);
  std::set<std::string> all(train.begin(), train.end());
  for (const auto& k : eval) EXPECT_EQ(all.count(k), 0u) << k;
  all.insert(eval.begin(), eval.end());
  EXPECT_EQ(all.size(), 1000u);
}

// Head selection draws from "select", the causal check and evaluation from "test": disjoint halves
// of the held-out keys, so no key that chose the heads reports how well they work.
TEST(Tasks, SelectionAndTestKeysAreDisjointHalvesOfTheHeldOutKeys) {
  const auto& eval = tasks::key_pool(KeySplit::kEval);
  const auto& select = tasks::key_pool(KeySplit::kSelect);
  const auto& test = tasks::key_pool(KeySplit::kTest);
  EXPECT_EQ(select.size(), 100u);
  EXPECT_EQ(test.size(), 100u);
  std::set<std::string> eval_set(eval.begin(), eval.end()), select_set(select.begin(), select.end());
  for (const auto& k : select) EXPECT_EQ(eval_set.count(k), 1u) << k;
  for (const auto& k : test) {
    EXPECT_EQ(eval_set.count(k), 1u) << k;
    EXPECT_EQ(select_set.count(k), 0u) << k;
  }
  // The probes built on them share no key: every dictionary line of a test example uses test keys.
  TaskOptions so, to;
  so.pairs = to.pairs = 50;
  so.split = KeySplit::kSelect;
  to.split = KeySplit::kTest;
  std::set<std::string> used_select;
  for (const auto& ex : tasks::make_examples("kv", so, 20, 0)) {
    const std::string& t = ex.segments[0].text;
    for (size_t p = t.find('\n'); p != std::string::npos; p = t.find('\n', p + 1)) {
      size_t colon = t.find(':', p + 1), next = t.find('\n', p + 1);
      if (colon != std::string::npos && colon < next) used_select.insert(t.substr(p + 1, colon - p - 1));
    }
  }
  EXPECT_FALSE(used_select.empty());
  for (const auto& ex : tasks::make_examples("kv", to, 20, 0))
    for (const auto& k : used_select) EXPECT_EQ(ex.segments[0].text.find("\n" + k + ":"), std::string::npos) << k;
  EXPECT_EQ(tasks::parse_key_split("test"), KeySplit::kTest);
  EXPECT_RAD_ERROR(tasks::parse_key_split("heldout"), "expected train, eval, select or test");
}

TEST(Tasks, KeyFileReplacesThePoolAndIsValidated) {
  TempDir dir;
  {
    std::ofstream(dir.file("keys.txt")) << "alpha\n beta \n\ngamma\n";
  }
  TaskOptions o;
  o.custom_keys = tasks::load_key_file(dir.file("keys.txt"));
  EXPECT_EQ(o.custom_keys, (std::vector<std::string>{"alpha", "beta", "gamma"}));
  o.pairs = 3;
  const std::string t = tasks::make_examples("kv", o, 1, 0)[0].segments[0].text;
  for (const char* k : {"alpha", "beta", "gamma"}) EXPECT_NE(t.find(std::string("\n") + k + ":"), std::string::npos) << k;
  o.pairs = 4;
  EXPECT_RAD_ERROR(tasks::make_examples("kv", o, 1, 0), "4 pairs but only 3 distinct keys");
  {
    std::ofstream(dir.file("dup.txt")) << "alpha\nalpha\n";
  }
  EXPECT_RAD_ERROR(tasks::load_key_file(dir.file("dup.txt")), "line 2: \"alpha\" is listed twice");
  EXPECT_RAD_ERROR(tasks::load_key_file(dir.file("missing.txt")), "cannot open it");
}

TEST(Tasks, KvProbeHasThePaperFormat) {
  TaskOptions o;
  o.pairs = 3;
  auto ex = tasks::make_examples("kv", o, 1, 7)[0];
  ASSERT_EQ(ex.segments.size(), 2u);
  const std::string& prompt = ex.segments[0].text;
  EXPECT_EQ(prompt.rfind("Memorize the following dictionary:\n", 0), 0u);
  // Three "key:value" lines, then the query.
  std::vector<std::string> lines;
  size_t pos = 0, nl;
  while ((nl = prompt.find('\n', pos)) != std::string::npos) {
    lines.push_back(prompt.substr(pos, nl - pos));
    pos = nl + 1;
  }
  std::string query = prompt.substr(pos);
  ASSERT_EQ(lines.size(), 4u);
  std::map<std::string, std::string> dict;
  for (int i = 1; i <= 3; ++i) {
    auto colon = lines[i].find(':');
    ASSERT_NE(colon, std::string::npos);
    dict[lines[i].substr(0, colon)] = lines[i].substr(colon + 1);
  }
  ASSERT_EQ(query.rfind("The value of the key '", 0), 0u);
  ASSERT_EQ(query.substr(query.size() - 4), "' is");
  std::string key = query.substr(22, query.size() - 26);
  ASSERT_TRUE(dict.count(key)) << key;
  EXPECT_TRUE(ex.segments[1].is_answer);
  EXPECT_EQ(ex.segments[1].text, " " + dict[key]);
  std::set<std::string> eval(tasks::key_pool(KeySplit::kEval).begin(), tasks::key_pool(KeySplit::kEval).end());
  for (const auto& [k, v] : dict) EXPECT_TRUE(eval.count(k)) << "probe keys come from the eval pool";
}

TEST(Tasks, SameSeedSameExamplesOtherSeedOthers) {
  TaskOptions o;
  o.pairs = 20;
  for (const auto& task : tasks::task_names()) {
    auto a = tasks::make_examples(task, o, 5, 42), b = tasks::make_examples(task, o, 5, 42),
         c = tasks::make_examples(task, o, 5, 43);
    for (int i = 0; i < 5; ++i) EXPECT_EQ(a[i].full_text(), b[i].full_text()) << task;
    EXPECT_NE(a[0].full_text() + a[1].full_text(), c[0].full_text() + c[1].full_text()) << task;
  }
}

TEST(Tasks, MqarAsksDistinctKeys) {
  TaskOptions o;
  o.pairs = 10;
  o.queries = 4;
  auto ex = tasks::make_examples("mqar", o, 1, 3)[0];
  int answers = 0;
  std::set<std::string> asked;
  for (const auto& s : ex.segments) {
    if (s.is_answer) ++answers;
    auto q = s.text.find("The value of the key '");
    if (q != std::string::npos) asked.insert(s.text.substr(q));
  }
  EXPECT_EQ(answers, 4);
  EXPECT_EQ(asked.size(), 4u);
}

TEST(Tasks, NeedleSitsAtTheRequestedDepth) {
  TaskOptions o;
  o.context_words = 200;
  for (double depth : {0.0, 0.5, 1.0}) {
    o.depth = depth;
    auto ex = tasks::make_examples("needle", o, 1, 5)[0];
    const std::string& text = ex.segments[0].text;
    size_t at = text.find("The secret number of the ");
    size_t question = text.find("\nWhat is the secret number");
    ASSERT_NE(at, std::string::npos);
    double frac = static_cast<double>(at) / question;
    EXPECT_NEAR(frac, depth, 0.06) << depth;
    EXPECT_EQ(ex.segments[1].text, text.substr(text.find(" is ", at) + 3, ex.segments[1].text.size()));
  }
}

// Several needles of one form: distinct keys and numbers, all in the filler, the asked one among
// them with its own number; the question comes after the whole haystack.
TEST(Tasks, MultiNeedleHidesDistinctFactsAndAsksOneOfThem) {
  TaskOptions o;
  o.context_words = 300;
  o.needles = 6;
  std::set<std::string> asked;
  for (const auto& ex : tasks::make_examples("multineedle", o, 20, 3)) {
    ASSERT_EQ(ex.segments.size(), 2u);
    const std::string& text = ex.segments[0].text;
    const std::string ask = "\nWhat is the secret number of the ";
    const size_t question = text.find(ask);
    ASSERT_NE(question, std::string::npos);
    std::set<std::string> keys, numbers;
    for (size_t at = text.find("The secret number of the "); at < question;
         at = text.find("The secret number of the ", at + 1)) {
      const size_t key_start = at + std::string("The secret number of the ").size(), is = text.find(" is ", key_start), dot = text.find('.', is);
      keys.insert(text.substr(key_start, is - key_start));
      numbers.insert(text.substr(is + 4, dot - is - 4));
    }
    EXPECT_EQ(keys.size(), 6u);
    EXPECT_EQ(numbers.size(), 6u);
    const size_t qk = question + ask.size();
    const std::string key = text.substr(qk, text.find('?', qk) - qk);
    ASSERT_TRUE(keys.count(key)) << key;
    asked.insert(key);
    // The answer is the number written beside that key in the haystack.
    const std::string fact = "The secret number of the " + key + " is" + ex.segments[1].text + ".";
    EXPECT_LT(text.find(fact), question) << fact;
    // About 300 filler words plus the facts and the question.
    const auto words = std::count(text.begin(), text.end(), ' ');
    EXPECT_GT(words, 300);
    EXPECT_LT(words, 300 + 6 * 8 + 20);
  }
  EXPECT_GT(asked.size(), 10u);  // different keys asked across examples
  o.needles = 101;
  EXPECT_RAD_ERROR(tasks::make_examples("multineedle", o, 1, 0), "needles must be in [1, ");
}

// Chance levels that decide which tasks a report may call results: guessing one of the listed values.
TEST(Tasks, ChanceLevelOfEachEvalTask) {
  EXPECT_DOUBLE_EQ(retrieval_chance("kv_50"), 0.02);
  EXPECT_DOUBLE_EQ(retrieval_chance("mqar_20x8"), 0.05);
  EXPECT_DOUBLE_EQ(retrieval_chance("needle_200w_d0.50"), 0.01);
  EXPECT_DOUBLE_EQ(retrieval_chance("multineedle_4x500w"), 0.25);
  EXPECT_DOUBLE_EQ(retrieval_chance("phonebook_20"), 0.0);
}

TEST(Tasks, PhonebookAndCopyAnswersAppearInThePrompt) {
  TaskOptions o;
  o.pairs = 12;
  auto pb = tasks::make_examples("phonebook", o, 3, 9);
  for (const auto& ex : pb) EXPECT_NE(ex.segments[0].text.find(":" + ex.segments[1].text + "\n"), std::string::npos);
  auto cp = tasks::make_examples("copy", o, 3, 9);
  for (const auto& ex : cp) EXPECT_NE(ex.segments[0].text.find("Text:" + ex.segments[1].text + "\n"), std::string::npos);
}

TEST(Tasks, BadOptionsAreNamedErrors) {
  TaskOptions o;
  o.pairs = 101;
  EXPECT_RAD_ERROR(tasks::make_examples("kv", o, 1, 0), "pairs must be in [1, 100]");
  EXPECT_RAD_ERROR(tasks::make_examples("sorting", o, 1, 0), "unknown task \"sorting\"");
  o.pairs = 5;
  o.depth = 2;
  EXPECT_RAD_ERROR(tasks::make_examples("needle", o, 1, 0), "depth must be in [0, 1]");
}

TEST(Scorer, WilsonIntervalMatchesTheFormula) {
  tasks::Accuracy a{50, 100};
  EXPECT_NEAR(a.low(), 0.4038, 1e-4);
  EXPECT_NEAR(a.high(), 0.5962, 1e-4);
  tasks::Accuracy all{20, 20};
  EXPECT_DOUBLE_EQ(all.high(), 1.0);
  EXPECT_NEAR(all.low(), 0.8389, 1e-4);
}

// Word-level stand-in for a tokenizer: each space-separated word is one token (hashed into the
// fixture's 64-token vocabulary).
std::vector<int64_t> tiny_encode(const std::string& s) {
  std::vector<int64_t> ids;
  std::string word;
  for (char c : s + " ") {
    if (c == ' ' || c == '\n') {
      if (!word.empty()) ids.push_back(static_cast<int64_t>(std::hash<std::string>()(word) % 60 + 2));
      word.clear();
    } else {
      word += c;
    }
  }
  return ids;
}

// Character-level stand-in for a digit-splitting tokenizer: " 42" -> [space, 4, 2].
std::vector<int64_t> char_encode(const std::string& s) {
  std::vector<int64_t> ids;
  for (char c : s) ids.push_back(c == ' ' ? 3 : (c >= '0' && c <= '9') ? 10 + (c - '0') : 30 + (c % 20));
  return ids;
}

TEST(Scorer, ALoneLeadingSpaceTokenIsTeacherForcedNotScored) {
  tasks::TaskExample ex;
  ex.segments = {{"key is", false}, {" 42", true}, {"\nkey2 is", false}, {" 7", true}};
  // Digit-splitting: the space is part of the prompt, the answer is the digits.
  tasks::EncodedExample split = tasks::encode_example(ex, char_encode, 1);
  ASSERT_EQ(split.answers.size(), 2u);
  EXPECT_EQ(split.ids[split.answers[0].first - 1], 3);
  EXPECT_EQ(split.answers[0].second - split.answers[0].first, 2);
  EXPECT_EQ(split.ids[split.answers[0].first], 14);
  EXPECT_EQ(split.answers[1].second - split.answers[1].first, 1);
  EXPECT_EQ(split.ids[split.answers[1].first], 17);
  // The full text's tokens are unchanged: prompt and answers concatenated.
  std::vector<int64_t> whole = {1};
  for (const auto& seg : ex.segments) for (int64_t t : char_encode(seg.text)) whole.push_back(t);
  EXPECT_EQ(split.ids, whole);
  // A tokenizer that writes " 42" as one token (word-level: spaces vanish): the whole answer is scored.
  tasks::EncodedExample word = tasks::encode_example(ex, tiny_encode, 1);
  ASSERT_EQ(word.answers.size(), 2u);
  EXPECT_EQ(word.answers[0].second - word.answers[0].first, 1);
  EXPECT_EQ(word.ids[word.answers[0].first], tiny_encode("42")[0]);
}

TEST(Scorer, AnswersAreExactlyTheAnswerTokensAndBatchingDoesNotChangeScores) {
  CausalLM model = io::load_causal_lm(fixture_model("llama_gqa"));
  TaskOptions o;
  o.pairs = 3;
  o.queries = 2;
  std::vector<tasks::EncodedExample> examples;
  for (const auto& ex : tasks::make_examples("mqar", o, 6, 11)) examples.push_back(tasks::encode_example(ex, tiny_encode, 1));
  for (const auto& e : examples) {
    ASSERT_EQ(e.answers.size(), 2u);
    EXPECT_EQ(e.ids[0], 1);
  }
  auto one = tasks::answer_correctness(model, examples, 1);
  auto four = tasks::answer_correctness(model, examples, 4);
  EXPECT_EQ(one, four);
  // Recompute the rule by hand for the first example.
  at::NoGradGuard no_grad;
  const auto& e = examples[0];
  at::Tensor logits = model->forward(at::tensor(e.ids, at::kLong).unsqueeze(0))[0];
  for (size_t a = 0; a < e.answers.size(); ++a) {
    bool ok = true;
    for (int64_t p = e.answers[a].first; p < e.answers[a].second; ++p)
      ok = ok && logits[p - 1].argmax().item<int64_t>() == e.ids[p];
    EXPECT_EQ(one[a], ok ? 1 : 0);
  }
}

}  // namespace
}  // namespace rad::test
