// Natural English filler text for needle-in-a-haystack.
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <vector>

namespace rad::tasks {

// `count` consecutive words of a built-in public-domain passage, from a random start (cycling).
std::vector<std::string> filler_words(int64_t count, std::mt19937_64& rng);

}  // namespace rad::tasks
