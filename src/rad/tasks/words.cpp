#include "rad/tasks/words.h"

#include <fstream>
#include <map>
#include <mutex>
#include <set>

#include "rad/core/error.h"

namespace rad::tasks {
namespace {

std::vector<std::string> every_fifth(const std::vector<std::string>& all, bool take) {
  std::vector<std::string> out;
  for (size_t i = 0; i < all.size(); ++i)
    if ((i % 5 == 4) == take) out.push_back(all[i]);
  return out;
}

// Biblical and common English names, distinct, no overlap between the lists.
const std::vector<std::string>& all_first_names() {
  static const std::vector<std::string> names = {
      "Aaron",   "Abel",   "Adam",    "Amos",    "Anna",    "Asher",   "Benjamin", "Caleb",  "Daniel",  "David",
      "Deborah", "Dinah",  "Eli",     "Elijah",  "Esther",  "Eve",     "Ezra",     "Gideon", "Hannah",  "Isaac",
      "Jacob",   "James",  "Jesse",   "Joel",    "John",    "Jonah",   "Joseph",   "Joshua", "Judith",  "Leah",
      "Levi",    "Lydia",  "Mark",    "Martha",  "Mary",    "Micah",   "Miriam",   "Moses",  "Naomi",   "Nathan",
      "Noah",    "Paul",   "Peter",   "Philip",  "Rachel",  "Rebecca", "Ruth",     "Samuel", "Sarah",   "Saul",
      "Seth",    "Simon",  "Solomon", "Stephen", "Susanna", "Thomas",  "Timothy",  "Titus",  "Zachary", "Ezekiel",
  };
  return names;
}

const std::vector<std::string>& all_surnames() {
  static const std::vector<std::string> names = {
      "Archer",  "Baker",  "Barber",  "Bishop", "Brewer",  "Carter", "Chandler", "Cook",    "Cooper",  "Draper",
      "Fisher",  "Fletcher", "Fowler", "Gardner", "Glover", "Harper", "Hunter",  "Knight",  "Mason",   "Miller",
      "Painter", "Parker", "Porter",  "Potter", "Shepherd", "Sawyer", "Slater",  "Smith",   "Spencer", "Taylor",
      "Thatcher", "Turner", "Walker", "Ward",   "Weaver",  "Webb",   "Wheeler", "Wright",  "Young",   "Abbott",
  };
  return names;
}

}  // namespace

namespace {

// Splits `all` once into its (train, eval) halves and returns the one asked for.
const std::vector<std::string>& pool(const std::vector<std::string>& all, KeySplit split) {
  static std::map<const std::vector<std::string>*, std::pair<std::vector<std::string>, std::vector<std::string>>> cache;
  static std::mutex mutex;
  std::lock_guard<std::mutex> lock(mutex);
  auto it = cache.find(&all);
  if (it == cache.end()) it = cache.emplace(&all, std::make_pair(every_fifth(all, false), every_fifth(all, true))).first;
  return split == KeySplit::kTrain ? it->second.first : it->second.second;
}

std::vector<std::string> alternate(const std::vector<std::string>& all, size_t parity) {
  std::vector<std::string> out;
  for (size_t i = parity; i < all.size(); i += 2) out.push_back(all[i]);
  return out;
}

}  // namespace

const std::vector<std::string>& key_pool(KeySplit split) {
  static const std::vector<std::string> select = alternate(pool(key_words(), KeySplit::kEval), 0);
  static const std::vector<std::string> test = alternate(pool(key_words(), KeySplit::kEval), 1);
  if (split == KeySplit::kSelect) return select;
  if (split == KeySplit::kTest) return test;
  return pool(key_words(), split);
}

KeySplit parse_key_split(const std::string& name) {
  if (name == "train") return KeySplit::kTrain;
  if (name == "eval") return KeySplit::kEval;
  if (name == "select") return KeySplit::kSelect;
  if (name == "test") return KeySplit::kTest;
  fail("unknown key split \"{}\" (expected train, eval, select or test)", name);
}

std::string key_split_name(KeySplit split) {
  switch (split) {
    case KeySplit::kTrain: return "train";
    case KeySplit::kEval: return "eval";
    case KeySplit::kSelect: return "select";
    case KeySplit::kTest: return "test";
  }
  return "eval";
}
const std::vector<std::string>& first_names(KeySplit split) { return pool(all_first_names(), split); }
const std::vector<std::string>& surnames(KeySplit split) { return pool(all_surnames(), split); }

std::vector<std::string> load_key_file(const std::string& path) {
  std::ifstream in(path);
  RAD_CHECK(in.good(), "key file {}: cannot open it (expected one key word per line)", path);
  std::vector<std::string> words;
  std::set<std::string> seen;
  std::string line;
  for (int64_t n = 1; std::getline(in, line); ++n) {
    size_t b = line.find_first_not_of(" \t\r"), e = line.find_last_not_of(" \t\r");
    if (b == std::string::npos) continue;
    std::string w = line.substr(b, e - b + 1);
    RAD_CHECK(w.find_first_of(" \t") == std::string::npos, "key file {}, line {}: \"{}\" is not one word", path, n, w);
    RAD_CHECK(seen.insert(w).second, "key file {}, line {}: \"{}\" is listed twice (keys must be distinct)", path, n, w);
    words.push_back(w);
  }
  RAD_CHECK(!words.empty(), "key file {}: no key words in it (expected one per line)", path);
  return words;
}

}  // namespace rad::tasks
