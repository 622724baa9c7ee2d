// Word pools for the synthetic retrieval tasks.
#pragma once

#include <string>
#include <vector>

namespace rad::tasks {

// 1000 distinct common English words (see key_words.cpp).
const std::vector<std::string>& key_words();

// kSelect and kTest split the evaluation pool in two halves (alternate words, 100 each): head
// selection uses kSelect, the causal check and the evaluation of the students use kTest, so the
// keys that chose the heads never report how well they work.
enum class KeySplit { kTrain, kEval, kSelect, kTest };

// Disjoint pools: every 5th key word is for evaluation (200), the others for training (800).
// Keys used for head scoring and evaluation are never seen in training data.
const std::vector<std::string>& key_pool(KeySplit split);

// "train", "eval", "select", "test" (the CLI's --split values); throws on anything else.
KeySplit parse_key_split(const std::string& name);
std::string key_split_name(KeySplit split);

// Key words from a text file, one per line (blank lines and surrounding spaces ignored). Throws
// rad::Error naming the file and line for a missing file, an empty list, a word with whitespace
// or a duplicate.
std::vector<std::string> load_key_file(const std::string& path);

// First names and surnames for the phone-book task (disjoint train/eval halves, like keys; kSelect
// and kTest use the eval half).
const std::vector<std::string>& first_names(KeySplit split);
const std::vector<std::string>& surnames(KeySplit split);

}  // namespace rad::tasks
