// Word pools for the synthetic retrieval tasks.
#pragma once

#include <string>
#include <vector>

namespace rad::tasks {

// 1000 distinct common English words (see key_words.cpp).
const std::vector<std::string>& key_words();

enum class KeySplit { kTrain, kEval };

// Disjoint pools: every 5th key word is for evaluation (200), the others for training (800).
// Keys used for head scoring and evaluation are never seen in training data.
const std::vector<std::string>& key_pool(KeySplit split);

// First names and surnames for the phone-book task (disjoint train/eval halves, like keys).
const std::vector<std::string>& first_names(KeySplit split);
const std::vector<std::string>& surnames(KeySplit split);

}  // namespace rad::tasks
