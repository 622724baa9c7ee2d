#include "commands.h"
#include "rad/core/torch_setup.h"

namespace rad::cli {

void register_env(CLI::App& app) {
  auto* cmd = app.add_subcommand("env", "Print libtorch version, BLAS backend, threads, allocator and CPU capability");
  cmd->callback([] { std::printf("%s\n", runtime_environment().dump(2).c_str()); });
}

}  // namespace rad::cli
