// libFuzzer driver: RAD_FUZZ_TARGET names the entry point (set by CMake per target).
#include "fuzz_entry_points.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) { return rad::fuzz::RAD_FUZZ_TARGET(data, size); }
