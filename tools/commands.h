// Subcommands of the `radistill` CLI; each file cmd_*.cpp registers one.
#pragma once

#include <CLI/CLI.hpp>

#include <string>
#include <vector>

namespace rad::cli {

void register_env(CLI::App& app);
void register_inspect(CLI::App& app);
void register_forward(CLI::App& app);
void register_generate(CLI::App& app);

// "1,5,9" -> {1, 5, 9}; throws rad::Error naming the bad element.
std::vector<int64_t> parse_token_ids(const std::string& text);

}  // namespace rad::cli
