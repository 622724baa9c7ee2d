// Helpers shared by the tests: fixture paths, temp directories, running the CLI.
#pragma once

#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "rad/core/error.h"

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
