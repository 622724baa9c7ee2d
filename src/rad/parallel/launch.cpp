#include "rad/parallel/launch.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "rad/core/error.h"
#include "rad/core/log.h"

extern char** environ;

namespace rad::parallel {

int free_tcp_port(const std::string& addr) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  RAD_CHECK(fd >= 0, "launch: cannot create a socket: {}", std::strerror(errno));
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = 0;
  if (::inet_pton(AF_INET, addr.c_str(), &sa.sin_addr) != 1) {
    ::close(fd);
    fail("launch: master address \"{}\" is not an IPv4 address", addr);
  }
  socklen_t len = sizeof(sa);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len) != 0) {
    int err = errno;
    ::close(fd);
    fail("launch: cannot find a free TCP port on {}: {}", addr, std::strerror(err));
  }
  ::close(fd);
  return ntohs(sa.sin_port);
}

namespace {

struct Child {
  int rank = 0;
  pid_t pid = -1;
  bool running = false;
  int status = 0;
  int fds[2] = {-1, -1};        // read ends of the child's stdout and stderr
  std::string pending[2];       // a partial last line per stream
};

// "exited with status 3" / "was killed by signal 9 (Killed)".
std::string describe_status(int status) {
  if (WIFEXITED(status)) return fmt::format("exited with status {}", WEXITSTATUS(status));
  if (WIFSIGNALED(status))
    return fmt::format("was killed by signal {} ({})", WTERMSIG(status), ::strsignal(WTERMSIG(status)));
  return fmt::format("ended with wait status {}", status);
}

// Writes every complete line of `data` (plus, at end of stream, the rest) prefixed with the rank.
void forward_lines(Child& c, int stream, const char* data, size_t n, bool eof) {
  std::string& buf = c.pending[stream];
  buf.append(data, n);
  FILE* out = stream == 0 ? stdout : stderr;
  size_t start = 0;
  for (size_t nl; (nl = buf.find('\n', start)) != std::string::npos; start = nl + 1)
    std::fprintf(out, "[rank %d] %.*s\n", c.rank, static_cast<int>(nl - start), buf.data() + start);
  buf.erase(0, start);
  if (eof && !buf.empty()) {
    std::fprintf(out, "[rank %d] %s\n", c.rank, buf.c_str());
    buf.clear();
  }
  std::fflush(out);
}

}  // namespace

void launch(const LaunchOptions& o) {
  RAD_CHECK(o.processes >= 1 && o.processes <= 1024, "launch: -n must be in [1, 1024], got {}", o.processes);
  RAD_CHECK(!o.args.empty(), "launch: give the command to run after --, e.g. `radistill launch -n 2 -- pretrain ...`");
  const int port = o.master_port > 0 ? o.master_port : free_tcp_port(o.master_addr);
  RAD_CHECK(port <= 65535, "launch: --master-port must be in [1, 65535], got {}", port);

  // Environment and argv for every child are built before fork (the child only calls
  // async-signal-safe functions).
  std::vector<std::string> base_env;
  for (char** e = environ; e && *e; ++e) {
    std::string kv(*e);
    std::string name = kv.substr(0, kv.find('='));
    if (name == "RANK" || name == "WORLD_SIZE" || name == "LOCAL_RANK" || name == "LOCAL_WORLD_SIZE" ||
        name == "MASTER_ADDR" || name == "MASTER_PORT")
      continue;
    base_env.push_back(kv);
  }
  std::vector<std::string> argv_s = {o.program};
  argv_s.insert(argv_s.end(), o.args.begin(), o.args.end());
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);

  std::vector<Child> children(o.processes);
  const pid_t parent = ::getpid();
  auto stop_all = [&](int sig) {
    for (auto& c : children)
      if (c.running) ::kill(c.pid, sig);
  };
  for (int r = 0; r < o.processes; ++r) {
    std::vector<std::string> env_s = base_env;
    env_s.push_back(fmt::format("RANK={}", r));
    env_s.push_back(fmt::format("LOCAL_RANK={}", r));
    env_s.push_back(fmt::format("WORLD_SIZE={}", o.processes));
    env_s.push_back(fmt::format("LOCAL_WORLD_SIZE={}", o.processes));
    env_s.push_back(fmt::format("MASTER_ADDR={}", o.master_addr));
    env_s.push_back(fmt::format("MASTER_PORT={}", port));
    std::vector<char*> envp;
    for (auto& e : env_s) envp.push_back(e.data());
    envp.push_back(nullptr);
    int out[2], err[2];
    if (::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0) {
      stop_all(SIGKILL);
      fail("launch: cannot create pipes for rank {}: {}", r, std::strerror(errno));
    }
    pid_t pid = ::fork();
    if (pid < 0) {
      stop_all(SIGKILL);
      fail("launch: cannot start rank {}: {}", r, std::strerror(errno));
    }
    if (pid == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // no orphans if the launcher dies
      if (::getppid() != parent) ::_exit(127);
      ::dup2(out[1], STDOUT_FILENO);
      ::dup2(err[1], STDERR_FILENO);
      ::execve(argv[0], argv.data(), envp.data());
      const char msg[] = "launch: cannot execute the program\n";
      ssize_t ignored = ::write(STDERR_FILENO, msg, sizeof(msg) - 1);
      (void)ignored;
      ::_exit(127);
    }
    ::close(out[1]);
    ::close(err[1]);
    Child& c = children[r];
    c.rank = r;
    c.pid = pid;
    c.running = true;
    c.fds[0] = out[0];
    c.fds[1] = err[0];
  }
  log_info("launch: {} processes of {}, MASTER_ADDR={} MASTER_PORT={}", o.processes, o.program, o.master_addr, port);

  int first_failed = -1;
  std::vector<std::string> failures;
  std::chrono::steady_clock::time_point kill_at{};
  bool killed = false;
  char buf[65536];
  for (;;) {
    std::vector<pollfd> pfds;
    std::vector<std::pair<int, int>> owner;  // (child, stream)
    for (int i = 0; i < o.processes; ++i)
      for (int s = 0; s < 2; ++s)
        if (children[i].fds[s] >= 0) {
          pfds.push_back({children[i].fds[s], POLLIN, 0});
          owner.push_back({i, s});
        }
    bool any_running = false;
    for (const auto& c : children) any_running |= c.running;
    if (pfds.empty() && !any_running) break;
    int ready = pfds.empty() ? 0 : ::poll(pfds.data(), pfds.size(), 50);
    if (pfds.empty()) ::usleep(50 * 1000);
    if (ready < 0 && errno != EINTR) fail("launch: poll failed: {}", std::strerror(errno));
    for (size_t k = 0; ready > 0 && k < pfds.size(); ++k) {
      if (pfds[k].revents == 0) continue;
      Child& c = children[owner[k].first];
      const int s = owner[k].second;
      ssize_t n = ::read(pfds[k].fd, buf, sizeof(buf));
      if (n > 0) {
        forward_lines(c, s, buf, static_cast<size_t>(n), false);
      } else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
        forward_lines(c, s, buf, 0, true);
        ::close(c.fds[s]);
        c.fds[s] = -1;
      }
    }
    for (auto& c : children) {
      if (!c.running) continue;
      int status = 0;
      pid_t w = ::waitpid(c.pid, &status, WNOHANG);
      if (w != c.pid) continue;
      c.running = false;
      c.status = status;
      const bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
      const bool stopped_by_us =
          first_failed >= 0 && WIFSIGNALED(status) && (WTERMSIG(status) == SIGTERM || WTERMSIG(status) == SIGKILL);
      if (ok || stopped_by_us) continue;
      failures.push_back(fmt::format("rank {} {}", c.rank, describe_status(status)));
      if (first_failed < 0) {
        first_failed = c.rank;
        stop_all(SIGTERM);
        kill_at = std::chrono::steady_clock::now() + o.kill_grace;
      }
    }
    if (first_failed >= 0 && !killed) {
      // Give the others a moment to report their own view, then stop them.
      bool others = false;
      for (const auto& c : children) others |= c.running;
      if (others && std::chrono::steady_clock::now() >= kill_at) {
        stop_all(SIGKILL);
        killed = true;
      } else if (!others) {
        killed = true;
      }
    }
  }
  if (first_failed >= 0) {
    std::string all;
    for (const auto& f : failures) all += (all.empty() ? "" : "; ") + f;
    fail("launch: rank {} of {} failed first ({}); the other ranks were stopped", first_failed, o.processes, all);
  }
}

}  // namespace rad::parallel
