// Helpers shared by the tests: fixture paths, temp directories, running the CLI.
#pragma once

#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "rad/core/error.h"
#include "rad/runtime/kernels.h"

namespace rad::test {

inline std::string source_dir() { return RAD_SOURCE_DIR; }
inline std::string fixture_model(const std::string& name) { return source_dir() + "/tests/fixtures/models/" + name; }

// A fresh directory under the system temp dir, removed at scope exit.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// Restores the runtime kernels chosen at start-up when a test switches them (runtime::set_isa).
struct IsaGuard {
  runtime::Isa saved = runtime::active_isa();
  ~IsaGuard() { runtime::set_isa(saved); }
};

// The runtime's kernel sets this CPU can run: the portable ones, and AVX2 where it has it.
inline std::vector<runtime::Isa> isas() {
  std::vector<runtime::Isa> v = {runtime::Isa::kPortable};
  if (runtime::detected_isa() == runtime::Isa::kAvx2) v.push_back(runtime::Isa::kAvx2);
  return v;
}

struct CliResult {
  int exit_code;
  std::string out;
  std::string err;
};
// Runs `build/radistill ARGS` (args are passed through a shell; quote as needed).
CliResult run_cli(const std::string& args);

// Expects `statement` to throw rad::Error whose message contains `needle`.
#define EXPECT_RAD_ERROR(statement, needle)                                                   \
  do {                                                                                        \
    try {                                                                                     \
      statement;                                                                              \
      ADD_FAILURE() << "expected rad::Error containing \"" << (needle) << "\"";              \
    } catch (const ::rad::Error& e) {                                                         \
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos)                        \
          << "message was: " << e.what();                                                     \
    }                                                                                         \
  } while (0)

}  // namespace rad::test
