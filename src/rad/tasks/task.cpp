#include "rad/tasks/task.h"

#include <fmt/format.h>

#include <algorithm>
#include <numeric>

#include "rad/core/error.h"
#include "rad/tasks/filler_text.h"

namespace rad::tasks {
namespace {

// k distinct indices from [0, n), in random order.
std::vector<int64_t> sample_distinct(int64_t n, int64_t k, std::mt19937_64& rng) {
  std::vector<int64_t> all(n);
  std::iota(all.begin(), all.end(), 0);
  for (int64_t i = 0; i < k; ++i) {
    std::uniform_int_distribution<int64_t> pick(i, n - 1);
    std::swap(all[i], all[pick(rng)]);
  }
  all.resize(k);
  return all;
}

int64_t uniform(int64_t lo, int64_t hi, std::mt19937_64& rng) {
  return std::uniform_int_distribution<int64_t>(lo, hi)(rng);
}

TaskExample make_needle(const TaskOptions& o, std::mt19937_64& rng) {
  RAD_CHECK(o.context_words >= 10, "needle: context_words must be >= 10, got {}", o.context_words);
  RAD_CHECK(o.depth >= 0 && o.depth <= 1, "needle: depth must be in [0, 1], got {}", o.depth);
  const auto& keys = keys_for(o);
  std::string key = keys[uniform(0, keys.size() - 1, rng)];
  int64_t value = uniform(0, 99, rng);
  std::vector<std::string> words = filler_words(o.context_words, rng);
  size_t at = static_cast<size_t>(o.depth * words.size());
  std::string needle = fmt::format("The secret number of the {} is {}.", key, value);
  std::string text;
  for (size_t i = 0; i <= words.size(); ++i) {
    if (i == at) text += (text.empty() ? "" : " ") + needle;
    if (i < words.size()) text += (text.empty() ? "" : " ") + words[i];
  }
  return {{{text + fmt::format("\nWhat is the secret number of the {}? The secret number of the {} is", key, key), false},
           {fmt::format(" {}", value), true}}};
}

TaskExample make_multineedle(const TaskOptions& o, std::mt19937_64& rng) {
  RAD_CHECK(o.context_words >= 10, "multineedle: context_words must be >= 10, got {}", o.context_words);
  const auto& keys = keys_for(o);
  RAD_CHECK(o.needles >= 1 && o.needles <= 100 && o.needles <= static_cast<int64_t>(keys.size()),
            "multineedle: needles must be in [1, {}] (distinct keys, numbers 0-99), got {}",
            std::min<int64_t>(100, keys.size()), o.needles);
  std::vector<int64_t> key_idx = sample_distinct(keys.size(), o.needles, rng);
  std::vector<int64_t> values = sample_distinct(100, o.needles, rng);
  std::vector<std::string> words = filler_words(o.context_words, rng);
  // Needle i goes before filler word at[i] (positions may repeat: then they follow one another).
  std::vector<size_t> at(o.needles);
  for (auto& a : at) a = static_cast<size_t>(uniform(0, words.size(), rng));
  std::sort(at.begin(), at.end());
  std::string text;
  auto append = [&](const std::string& piece) { text += (text.empty() ? "" : " ") + piece; };
  size_t next = 0;
  for (size_t i = 0; i <= words.size(); ++i) {
    for (; next < at.size() && at[next] == i; ++next)
      append(fmt::format("The secret number of the {} is {}.", keys[key_idx[next]], values[next]));
    if (i < words.size()) append(words[i]);
  }
  const int64_t j = uniform(0, o.needles - 1, rng);
  const std::string& key = keys[key_idx[j]];
  return {{{text + fmt::format("\nWhat is the secret number of the {}? The secret number of the {} is", key, key), false},
           {fmt::format(" {}", values[j]), true}}};
}

TaskExample make_phonebook(const TaskOptions& o, std::mt19937_64& rng) {
  const auto& first = first_names(o.split);
  const auto& last = surnames(o.split);
  const int64_t combos = static_cast<int64_t>(first.size() * last.size());
  RAD_CHECK(o.pairs >= 1 && o.pairs <= combos, "phonebook: entries must be in [1, {}], got {}", combos, o.pairs);
  std::vector<int64_t> people = sample_distinct(combos, o.pairs, rng);
  std::vector<std::string> names, numbers;
  std::string text = "Phone book:\n";
  for (int64_t p : people) {
    names.push_back(first[p % first.size()] + " " + last[p / first.size()]);
    numbers.push_back(fmt::format("{:03d}-{:04d}", uniform(200, 999, rng), uniform(0, 9999, rng)));
    text += names.back() + ": " + numbers.back() + "\n";
  }
  int64_t j = uniform(0, o.pairs - 1, rng);
  return {{{text + "The phone number of " + names[j] + " is", false}, {" " + numbers[j], true}}};
}

TaskExample make_copy(const TaskOptions& o, std::mt19937_64& rng) {
  RAD_CHECK(o.span_words >= 1 && o.span_words <= 1000, "copy: span_words must be in [1, 1000], got {}", o.span_words);
  const auto& keys = keys_for(o);
  std::string span;
  for (int64_t i = 0; i < o.span_words; ++i) span += " " + keys[uniform(0, keys.size() - 1, rng)];
  return {{{"Copy the following text exactly.\nText:" + span + "\nCopy:", false}, {span, true}}};
}

}  // namespace

const std::vector<std::string>& keys_for(const TaskOptions& o) {
  if (!o.custom_keys.empty()) return o.custom_keys;
  return key_pool(o.split);
}

std::string TaskExample::full_text() const {
  std::string s;
  for (const auto& seg : segments) s += seg.text;
  return s;
}

const std::vector<std::string>& task_names() {
  static const std::vector<std::string> names = {"kv", "mqar", "needle", "multineedle", "phonebook", "copy"};
  return names;
}

TaskExample make_kv_example(const TaskOptions& o, std::mt19937_64& rng, int64_t n_queries) {
  const auto& keys = keys_for(o);
  RAD_CHECK(o.pairs >= 1 && o.pairs <= 100, "kv: pairs must be in [1, 100] (values are the integers 0-99), got {}",
            o.pairs);
  RAD_CHECK(o.pairs <= static_cast<int64_t>(keys.size()), "kv: {} pairs but only {} distinct keys", o.pairs,
            keys.size());
  std::vector<int64_t> key_idx = sample_distinct(keys.size(), o.pairs, rng);
  std::vector<int64_t> values = sample_distinct(100, o.pairs, rng);
  std::string dict = "Memorize the following dictionary:\n";
  for (int64_t i = 0; i < o.pairs; ++i) dict += keys[key_idx[i]] + ":" + std::to_string(values[i]) + "\n";
  n_queries = std::min(n_queries, o.pairs);
  std::vector<int64_t> asked = sample_distinct(o.pairs, n_queries, rng);
  TaskExample ex;
  std::string pending = dict;
  for (int64_t q = 0; q < n_queries; ++q) {
    int64_t j = asked[q];
    pending += (q ? "\n" : "") + fmt::format("The value of the key '{}' is", keys[key_idx[j]]);
    ex.segments.push_back({pending, false});
    ex.segments.push_back({" " + std::to_string(values[j]), true});
    pending.clear();
  }
  return ex;
}

TaskExample make_example(const std::string& task, const TaskOptions& o, std::mt19937_64& rng) {
  if (task == "kv") return make_kv_example(o, rng, 1);
  if (task == "mqar") {
    RAD_CHECK(o.queries >= 1, "mqar: queries must be >= 1, got {}", o.queries);
    return make_kv_example(o, rng, o.queries);
  }
  if (task == "needle") return make_needle(o, rng);
  if (task == "multineedle") return make_multineedle(o, rng);
  if (task == "phonebook") return make_phonebook(o, rng);
  if (task == "copy") return make_copy(o, rng);
  fail("unknown task \"{}\" (expected one of kv, mqar, needle, multineedle, phonebook, copy)", task);
}

std::vector<TaskExample> make_examples(const std::string& task, const TaskOptions& options, int64_t count,
                                       uint64_t seed) {
  RAD_CHECK(count >= 1, "{}: number of examples must be >= 1, got {}", task, count);
  std::mt19937_64 rng(seed);
  std::vector<TaskExample> out;
  out.reserve(count);
  for (int64_t i = 0; i < count; ++i) out.push_back(make_example(task, options, rng));
  return out;
}

}  // namespace rad::tasks
