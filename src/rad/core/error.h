// Error type and checking macros used across radistill.
//
// Every user-facing failure is an rad::Error whose message names the file, field or value at
// fault and what was expected; the CLI prints it and exits non-zero instead of crashing.
#pragma once

#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace rad {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> format, Args&&... args) {
  throw Error(fmt::format(format, std::forward<Args>(args)...));
}

}  // namespace rad

// RAD_CHECK(cond, "fmt {}", args...): throws rad::Error with the formatted message when cond is false.
#define RAD_CHECK(cond, ...)    \
  do {                          \
    if (!(cond)) {              \
      ::rad::fail(__VA_ARGS__); \
    }                           \
  } while (0)
