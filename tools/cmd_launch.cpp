#include <algorithm>

#include "commands.h"
#include "rad/core/torch_setup.h"
#include "rad/parallel/launch.h"

namespace rad::cli {

void register_launch(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "launch", "Run N data-parallel copies of a radistill command on this machine (torchrun-style environment)");
  static parallel::LaunchOptions o;
  cmd->add_option("-n,--nproc", o.processes, "Processes (ranks)")->capture_default_str();
  cmd->add_option("--master-port", o.master_port, "TCP port of the rendezvous store on 127.0.0.1 (default: a free one)");
  cmd->add_option("command", o.args, "The radistill command and its arguments, after --, e.g. -- pretrain --batch 8 ...")
      ->required();
  cmd->footer("Each copy gets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR=127.0.0.1 and MASTER_PORT; its output lines "
              "are prefixed with [rank R]. Unless --threads is given, each copy uses cores / N threads. If one copy "
              "fails, the others are stopped and launch exits non-zero naming the rank.");
  cmd->callback([] {
    // The global options apply to every copy; by default the cores are shared out between them.
    const GlobalOptions& g = global_options();
    std::vector<std::string> prefix;
    if (std::none_of(o.args.begin(), o.args.end(), [](const std::string& a) { return a.rfind("--threads", 0) == 0; }))
      prefix = {"--threads", std::to_string(g.threads > 0 ? g.threads : std::max(1, available_cores() / o.processes))};
    // A bare --device cuda becomes cuda:LOCAL_RANK in each copy (one GPU per rank).
    if (g.device != "cpu" &&
        std::none_of(o.args.begin(), o.args.end(), [](const std::string& a) { return a.rfind("--device", 0) == 0; }))
      prefix.insert(prefix.end(), {"--device", g.device});
    if (g.quiet) prefix.push_back("--quiet");
    if (g.verbose) prefix.push_back("--verbose");
    o.args.insert(o.args.begin(), prefix.begin(), prefix.end());
    parallel::launch(o);
  });
}

}  // namespace rad::cli
