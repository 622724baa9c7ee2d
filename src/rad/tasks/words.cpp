#include "rad/tasks/words.h"

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

const std::vector<std::string>& key_pool(KeySplit split) {
  static const std::vector<std::string> train = every_fifth(key_words(), false);
  static const std::vector<std::string> eval = every_fifth(key_words(), true);
  return split == KeySplit::kTrain ? train : eval;
}

const std::vector<std::string>& first_names(KeySplit split) {
  static const std::vector<std::string> train = every_fifth(all_first_names(), false);
  static const std::vector<std::string> eval = every_fifth(all_first_names(), true);
  return split == KeySplit::kTrain ? train : eval;
}

const std::vector<std::string>& surnames(KeySplit split) {
  static const std::vector<std::string> train = every_fifth(all_surnames(), false);
  static const std::vector<std::string> eval = every_fifth(all_surnames(), true);
  return split == KeySplit::kTrain ? train : eval;
}

}  // namespace rad::tasks
