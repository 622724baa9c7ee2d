#include "rad/tasks/words.h"

#include <map>
#include <mutex>

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

}  // namespace

const std::vector<std::string>& key_pool(KeySplit split) { return pool(key_words(), split); }
const std::vector<std::string>& first_names(KeySplit split) { return pool(all_first_names(), split); }
const std::vector<std::string>& surnames(KeySplit split) { return pool(all_surnames(), split); }

}  // namespace rad::tasks
