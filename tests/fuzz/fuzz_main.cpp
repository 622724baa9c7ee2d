// libFuzzer driver: RAD_FUZZ_TARGET names the entry point (set by CMake per target).
#include "fuzz_entry_points.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) { return rad::fuzz::RAD_FUZZ_TARGET(data, size); }

// Runs the target once on an empty input so one-time set-up (e.g. loading the 9 MB Llama-3
// tokenizer.json, slow under ASan) is not charged to the first input's 1 s timeout.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  static const uint8_t empty = 0;
  rad::fuzz::RAD_FUZZ_TARGET(&empty, 0);
  return 0;
}
