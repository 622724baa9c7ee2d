// Diagnostics go to stderr so that stdout stays machine-readable (JSON, generated text).
#pragma once

#include <fmt/format.h>

#include <cstdio>
#include <string>

namespace rad {

enum class LogLevel { kQuiet = 0, kInfo = 1, kDebug = 2 };

LogLevel log_level();
void set_log_level(LogLevel level);

void log_line(const char* prefix, const std::string& message);

template <typename... Args>
void log_info(fmt::format_string<Args...> format, Args&&... args) {
  if (log_level() >= LogLevel::kInfo) log_line("", fmt::format(format, std::forward<Args>(args)...));
}

template <typename... Args>
void log_debug(fmt::format_string<Args...> format, Args&&... args) {
  if (log_level() >= LogLevel::kDebug) log_line("debug: ", fmt::format(format, std::forward<Args>(args)...));
}

// Warnings are printed even in quiet mode.
template <typename... Args>
void log_warn(fmt::format_string<Args...> format, Args&&... args) {
  log_line("warning: ", fmt::format(format, std::forward<Args>(args)...));
}

}  // namespace rad
