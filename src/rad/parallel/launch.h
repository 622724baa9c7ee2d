// A one-machine launcher in the manner of torchrun: N copies of a program, each with the torchrun
// environment (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT), their
// output lines prefixed with "[rank R] ", and the whole job stopped as soon as one copy fails.
#pragma once

#include <chrono>
#include <string>
#include <vector>

namespace rad::parallel {

struct LaunchOptions {
  int processes = 2;
  std::string program = "/proc/self/exe";  // the running binary
  std::vector<std::string> args;           // arguments after the program name
  std::string master_addr = "127.0.0.1";
  int master_port = 0;                               // 0: a free port on master_addr
  std::chrono::milliseconds kill_grace{5000};        // SIGTERM, then SIGKILL after this
};

// A TCP port on `addr` that nothing listens on right now (bound to port 0, then released).
int free_tcp_port(const std::string& addr);

// Runs options.processes copies and waits for them. Returns when all exit with status 0. When one
// fails (non-zero status or a signal), the others are sent SIGTERM (SIGKILL after kill_grace) and a
// rad::Error names the rank that failed first and how. Children die with the launcher (PDEATHSIG).
void launch(const LaunchOptions& options);

}  // namespace rad::parallel
