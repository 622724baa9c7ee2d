// Debian's libtorch_cpu.so is built with Gloo; its c10d header only declares ProcessGroupGloo when
// this is defined (TorchConfig.cmake defines it; the gloo headers come from libgloo-dev).
#ifndef USE_C10D_GLOO
#define USE_C10D_GLOO 1
#endif

#include "rad/parallel/process_group.h"

#include <c10/util/Exception.h>
#include <cstring>
#include <signal.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <unistd.h>
// A CUDA build (CMake's RAD_CUDA / a CUDA libtorch) also runs NCCL for the CUDA tensors of
// --device cuda; gloo stays for everything on the CPU (and would carry CUDA tensors too, slower).
#if defined(RAD_WITH_CUDA) && defined(USE_C10D_NCCL)
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#define RAD_HAVE_NCCL 1
#endif

#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <map>
#include <thread>
#include <optional>

#include "rad/core/device.h"
#include "rad/core/error.h"
#include "rad/core/log.h"

namespace rad::parallel {

namespace {

std::vector<uint8_t> bytes(const std::string& s) { return {s.begin(), s.end()}; }
std::string text(const std::vector<uint8_t>& b) { return {b.begin(), b.end()}; }

// c10::Error::what() carries a C++ backtrace; users need the message only.
std::string brief(const std::exception& e) {
  if (auto* c = dynamic_cast<const c10::Error*>(&e)) return c->what_without_backtrace();
  return e.what();
}

// Strict integer parse of an environment variable; nullopt when unset.
std::optional<int64_t> env_int(const std::function<const char*(const char*)>& get, const char* name, int64_t lo,
                               int64_t hi, const std::string& expected) {
  const char* v = get(name);
  if (v == nullptr) return std::nullopt;
  std::string s(v);
  char* end = nullptr;
  errno = 0;
  long long x = std::strtoll(s.c_str(), &end, 10);
  RAD_CHECK(!s.empty() && end != nullptr && *end == '\0' && errno == 0 && x >= lo && x <= hi,
            "environment variable {}=\"{}\": expected {}", name, s, expected);
  return x;
}

std::string hostname() {
  char buf[256] = {0};
  if (::gethostname(buf, sizeof(buf) - 1) != 0) return "?";
  return buf;
}

// Whether process `pid` of this host is gone: no such process, or a zombie its parent has not
// reaped yet (kill(pid, 0) still succeeds on those).
bool process_gone(long pid) {
  if (pid <= 0) return false;
  if (::kill(static_cast<pid_t>(pid), 0) != 0) return errno == ESRCH;
  std::ifstream stat(fmt::format("/proc/{}/stat", pid));
  std::string line;
  if (!std::getline(stat, line)) return true;
  auto paren = line.rfind(')');  // the state follows "pid (comm) "
  return paren != std::string::npos && paren + 2 < line.size() && (line[paren + 2] == 'Z' || line[paren + 2] == 'X');
}

bool is_loopback(const std::string& addr) {
  return addr == "localhost" || addr.rfind("127.", 0) == 0 || addr == "::1";
}

}  // namespace

LaunchEnv read_launch_env(const std::function<const char*(const char*)>& get_env) {
  auto get = get_env ? get_env : [](const char* n) -> const char* { return std::getenv(n); };
  LaunchEnv env;
  const bool any = get("RANK") || get("WORLD_SIZE");
  if (!any) return env;
  auto world = env_int(get, "WORLD_SIZE", 1, 1 << 20, "the number of processes, an integer >= 1");
  RAD_CHECK(world.has_value(), "environment variable RANK is set but WORLD_SIZE is not: set both (torchrun style) or "
            "neither (a single process)");
  env.world_size = static_cast<int>(*world);
  const std::string rank_range = fmt::format("an integer in [0, WORLD_SIZE {})", env.world_size);
  auto rank = env_int(get, "RANK", 0, env.world_size - 1, rank_range);
  RAD_CHECK(rank.has_value(), "environment variable WORLD_SIZE={} is set but RANK is not: set both (torchrun style) "
            "or neither (a single process)", env.world_size);
  env.rank = static_cast<int>(*rank);
  env.local_rank = static_cast<int>(
      env_int(get, "LOCAL_RANK", 0, env.world_size - 1, rank_range).value_or(env.rank));
  if (env.world_size == 1) return env;
  const char* addr = get("MASTER_ADDR");
  RAD_CHECK(addr != nullptr && *addr != '\0',
            "WORLD_SIZE={} needs MASTER_ADDR (the host of rank 0, e.g. 127.0.0.1 on one machine)", env.world_size);
  env.master_addr = addr;
  auto port = env_int(get, "MASTER_PORT", 1, 65535, "a TCP port in [1, 65535]");
  RAD_CHECK(port.has_value(), "WORLD_SIZE={} needs MASTER_PORT (a free TCP port on MASTER_ADDR)", env.world_size);
  env.master_port = static_cast<int>(*port);
  return env;
}

std::chrono::milliseconds collective_timeout() {
  const char* v = std::getenv("RADISTILL_DIST_TIMEOUT_S");
  if (v == nullptr || *v == '\0') return std::chrono::seconds(900);
  char* end = nullptr;
  double s = std::strtod(v, &end);
  RAD_CHECK(end != nullptr && *end == '\0' && s > 0 && s <= 7 * 24 * 3600,
            "environment variable RADISTILL_DIST_TIMEOUT_S=\"{}\": expected seconds > 0", v);
  return std::chrono::milliseconds(static_cast<int64_t>(s * 1000));
}

struct ProcessGroup::Impl {
  LaunchEnv env;
  std::chrono::milliseconds timeout{0};
  c10::intrusive_ptr<c10d::TCPStore> tcp;
  c10::intrusive_ptr<c10d::Store> store;  // radistill's own keys (liveness, progress, failures)
  c10::intrusive_ptr<c10d::ProcessGroupGloo> pg;
#ifdef RAD_HAVE_NCCL
  c10::intrusive_ptr<c10d::ProcessGroupNCCL> nccl;  // only under --device cuda
#endif
  int64_t seq = 0;            // collectives begun by this rank
  int64_t checks = 0;         // check_same calls
  std::string last_what;      // the latest of them
  bool collective_failed = false;
  bool reported = false;

  std::string key(const char* kind, int rank) const { return fmt::format("{}/{}", kind, rank); }
  bool has(const std::string& k) const { return store->check({k}); }
  // f(NCCL group) for CUDA tensors when there is an NCCL group, f(gloo group) otherwise. A generic
  // call rather than a common base: that is c10d::ProcessGroup in libtorch 1.x and c10d::Backend in 2.x.
  template <class F>
  auto on_backend_for(const at::Tensor& t, F&& f) {
#ifdef RAD_HAVE_NCCL
    if (t.is_cuda() && nccl) return f(*nccl);
#endif
    return f(*pg);
  }
  std::string get(const std::string& k) const { return text(store->get(k)); }
};

ProcessGroup::ProcessGroup() = default;

ProcessGroup::~ProcessGroup() {
  if (!impl_) return;
  // Peers still waiting on this rank learn that it left on purpose rather than died.
  if (!impl_->reported) {
    try {
      impl_->store->set(impl_->key("exited", rank_), bytes(fmt::format("{} {}", impl_->seq, impl_->last_what)));
    } catch (...) {
    }
  }
#ifdef RAD_HAVE_NCCL
  impl_->nccl.reset();
#endif
  impl_->pg.reset();
  impl_->store.reset();
  impl_->tcp.reset();
}

std::string ProcessGroup::describe() const { return fmt::format("rank {} of {}", rank_, world_size_); }

std::shared_ptr<ProcessGroup> ProcessGroup::from_environment() {
  return connect(read_launch_env(), collective_timeout());
}

std::shared_ptr<ProcessGroup> ProcessGroup::connect(const LaunchEnv& env, std::chrono::milliseconds timeout) {
  std::shared_ptr<ProcessGroup> group(new ProcessGroup());
  if (env.world_size <= 1) return group;
  group->rank_ = env.rank;
  group->world_size_ = env.world_size;
  // Gloo writes to its peers with writev(), which raises SIGPIPE when a peer has died; its default
  // action would kill this process silently instead of letting the failed collective name the
  // peer. (Python, and so PyTorch's usual users, ignores SIGPIPE from the start.)
  ::signal(SIGPIPE, SIG_IGN);
  auto impl = std::make_unique<Impl>();
  impl->env = env;
  impl->timeout = timeout;
  const double timeout_s = timeout.count() / 1000.0;
  const std::string where = fmt::format("{}:{}", env.master_addr, env.master_port);
  try {
    c10d::TCPStoreOptions so;
    so.port = static_cast<uint16_t>(env.master_port);
    so.isServer = env.rank == 0;
    so.numWorkers = env.world_size;
    so.waitWorkers = false;  // the process group's own rendezvous below waits, with a better error
    so.timeout = timeout;
    impl->tcp = c10::make_intrusive<c10d::TCPStore>(env.master_addr, so);
  } catch (const std::exception& e) {
    fail("rank {} of {}: cannot {} the rendezvous store at MASTER_ADDR:MASTER_PORT {} within {} s: {}", env.rank,
         env.world_size, env.rank == 0 ? "open" : "reach", where, timeout_s, brief(e));
  }
  impl->store = c10::make_intrusive<c10d::PrefixStore>("radistill", impl->tcp);
  auto gloo_store = c10::make_intrusive<c10d::PrefixStore>("gloo", impl->tcp);
  try {
    impl->store->set(impl->key("pid", env.rank), bytes(fmt::format("{} {}", hostname(), ::getpid())));
    auto options = c10d::ProcessGroupGloo::Options::create(timeout);
    // Loopback for one machine; GLOO_SOCKET_IFNAME (PyTorch's variable) or this host's address otherwise.
    if (const char* ifname = std::getenv("GLOO_SOCKET_IFNAME"); ifname && *ifname)
      options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
    else if (is_loopback(env.master_addr))
      options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
    else
      options->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
    impl->pg = c10::make_intrusive<c10d::ProcessGroupGloo>(gloo_store, env.rank, env.world_size, options);
#ifdef RAD_HAVE_NCCL
    if (compute_device().is_cuda()) {
      // Without async error handling a hung NCCL collective ignores the timeout (PyTorch 1.13 reads
      // the first name, 2.x the second).
      ::setenv("NCCL_ASYNC_ERROR_HANDLING", "1", 0);
      ::setenv("TORCH_NCCL_ASYNC_ERROR_HANDLING", "1", 0);
      auto nccl_options = c10d::ProcessGroupNCCL::Options::create();
      nccl_options->timeout = timeout;
      impl->nccl = c10::make_intrusive<c10d::ProcessGroupNCCL>(
          c10::make_intrusive<c10d::PrefixStore>("nccl", impl->tcp), env.rank, env.world_size, nccl_options);
    }
#endif
  } catch (const std::exception& e) {
    std::string missing;
    try {
      for (int r = 0; r < env.world_size; ++r)
        if (!impl->has(impl->key("pid", r))) missing += (missing.empty() ? "" : ", ") + std::to_string(r);
    } catch (...) {
    }
    fail("rank {} of {}: the process group did not form within {} s (store {}){}: {}", env.rank, env.world_size,
         timeout_s, where, missing.empty() ? "" : fmt::format("; ranks that never joined: {}", missing), brief(e));
  }
  group->impl_ = std::move(impl);
#ifdef RAD_HAVE_NCCL
  const char* cuda_backend = group->impl_->nccl ? " and NCCL for CUDA tensors" : "";
#else
  const char* cuda_backend = compute_device().is_cuda() ? " (CUDA tensors too: no NCCL in this build)" : "";
#endif
  if (env.rank == 0)
    log_info("data-parallel: {} processes, gloo over {}{}, store {}, collective timeout {} s", env.world_size,
             is_loopback(env.master_addr) ? "loopback" : "TCP", cuda_backend, where, timeout_s);
  return group;
}

void ProcessGroup::begin_collective(const std::string& what) {
  ++impl_->seq;
  impl_->last_what = what;
  try {
    impl_->store->set(impl_->key("seq", rank_), bytes(fmt::format("{} {}", impl_->seq, what)));
  } catch (const std::exception& e) {
    fail_collective(what, e);
  }
}

void ProcessGroup::fail_collective(const std::string& what, const std::exception& e) {
  impl_->collective_failed = true;
  std::string cause = diagnose_peers();
  // A peer may still be on its way out (writing its failure, or not yet reaped): look again briefly.
  for (int attempt = 0; attempt < 5 && cause.empty(); ++attempt) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    cause = diagnose_peers();
  }
  if (cause.empty()) cause = "no peer left a reason in the store";
  fail("{}: {} failed: {} [c10d/gloo: {}]", describe(), what, cause, brief(e));
}

std::string ProcessGroup::diagnose_peers() const {
  const double timeout_s = impl_->timeout.count() / 1000.0;
  // What the peers left in the store says which of them is at fault.
  std::vector<std::string> causes;
  try {
    const std::string here = hostname();
    for (int r = 0; r < world_size_; ++r) {
      if (r == rank_) continue;
      if (impl_->has(impl_->key("failed", r))) {
        causes.push_back(fmt::format("rank {} failed: {}", r, impl_->get(impl_->key("failed", r))));
        continue;
      }
      int64_t seq = 0;
      std::string at = "before its first collective";
      if (impl_->has(impl_->key("seq", r))) {
        std::string s = impl_->get(impl_->key("seq", r));
        seq = std::atoll(s.c_str());
        at = fmt::format("after collective #{} ({})", seq, s.substr(std::min(s.size(), s.find(' ') + 1)));
      }
      if (impl_->has(impl_->key("exited", r))) {
        causes.push_back(fmt::format("rank {} exited early, {}", r, at));
        continue;
      }
      if (impl_->has(impl_->key("pid", r))) {
        std::string p = impl_->get(impl_->key("pid", r));
        auto space = p.rfind(' ');
        long pid = std::atol(p.c_str() + space + 1);
        if (p.substr(0, space) == here && process_gone(pid)) {
          causes.push_back(fmt::format("rank {} (pid {}) died without a word (killed or crashed), {}", r, pid, at));
          continue;
        }
      }
      if (seq < impl_->seq)
        causes.push_back(fmt::format("rank {} has not reached this collective (#{}): it is still {}, so it hangs or "
                                     "is far slower (timeout {} s)", r, impl_->seq, at, timeout_s));
    }
  } catch (const std::exception&) {
    causes.push_back(rank_ == 0 ? "the rendezvous store is unreachable"
                                : fmt::format("the rendezvous store on rank 0 ({}:{}) is unreachable, so rank 0 "
                                              "exited or died", impl_->env.master_addr, impl_->env.master_port));
  }
  std::string cause;
  for (const auto& c : causes) cause += (cause.empty() ? "" : "; ") + c;
  return cause;
}

namespace {

// One contiguous float32 buffer holding every piece, and how to copy it back.
at::Tensor flatten(const std::vector<at::Tensor>& pieces) {
  std::vector<at::Tensor> flat;
  flat.reserve(pieces.size());
  for (const auto& p : pieces) flat.push_back(p.reshape({-1}).to(at::kFloat));
  return at::cat(flat);
}

}  // namespace

void ProcessGroup::allreduce_gradients(const std::vector<at::Tensor>& params, Reduce op, at::Tensor* extra,
                                       const std::string& what) {
  if (!distributed()) return;
  at::NoGradGuard no_grad;
  std::vector<at::Tensor> pieces;
  for (const auto& p : params) {
    if (!p.requires_grad()) continue;
    pieces.push_back(p.grad().defined() ? p.grad() : at::zeros_like(p, p.options().dtype(at::kFloat)));
  }
  if (extra) pieces.push_back(*extra);
  at::Tensor flat = flatten(pieces);
  allreduce(flat, op, what);
  int64_t offset = 0;
  size_t i = 0;
  for (const auto& p : params) {
    if (!p.requires_grad()) continue;
    at::Tensor slice = flat.narrow(0, offset, p.numel()).view(p.sizes());
    offset += p.numel();
    if (pieces[i++].is_same(p.grad()))
      p.mutable_grad().copy_(slice);
    else
      p.mutable_grad() = slice.to(p.dtype()).clone();
  }
  if (extra) extra->copy_(flat.narrow(0, offset, extra->numel()).view(extra->sizes()));
}

void ProcessGroup::allreduce(at::Tensor& t, Reduce op, const std::string& what) {
  if (!distributed()) return;
  begin_collective(what);
  at::Tensor buffer = t.is_contiguous() ? t : t.contiguous();
  std::vector<at::Tensor> v{buffer};
  c10d::AllreduceOptions o;
  o.reduceOp = c10d::ReduceOp::SUM;  // gloo has no AVG: the mean divides below
  try {
    impl_->on_backend_for(buffer, [&](auto& backend) { return backend.allreduce(v, o); })->wait();
  } catch (const std::exception& e) {
    fail_collective(what, e);
  }
  if (op == Reduce::kMean) buffer.div_(world_size_);
  if (!buffer.is_same(t)) t.copy_(buffer);
}

void ProcessGroup::broadcast(const std::vector<at::Tensor>& tensors, int root, const std::string& what) {
  if (!distributed() || tensors.empty()) return;
  at::NoGradGuard no_grad;
  // One buffer per dtype (all float32 in practice: one collective).
  std::map<at::ScalarType, std::vector<at::Tensor>> by_type;
  for (const auto& t : tensors) by_type[t.scalar_type()].push_back(t);
  for (auto& [type, group] : by_type) {
    std::vector<at::Tensor> flat;
    for (const auto& t : group) flat.push_back(t.reshape({-1}));
    std::vector<at::Tensor> v{at::cat(flat)};
    begin_collective(what);
    c10d::BroadcastOptions o;
    o.rootRank = root;
    try {
      impl_->on_backend_for(v[0], [&](auto& backend) { return backend.broadcast(v, o); })->wait();
    } catch (const std::exception& e) {
      fail_collective(what, e);
    }
    int64_t offset = 0;
    for (auto& t : group) {
      t.copy_(v[0].narrow(0, offset, t.numel()).view(t.sizes()));
      offset += t.numel();
    }
  }
}

std::vector<std::string> ProcessGroup::allgather_strings(const std::string& mine, const std::string& what) {
  if (!distributed()) return {mine};
  at::NoGradGuard no_grad;
  at::Tensor lengths = at::zeros({world_size_}, at::kLong);
  lengths[rank_] = static_cast<int64_t>(mine.size());
  allreduce(lengths, Reduce::kSum, what + " (lengths)");
  std::vector<int64_t> offsets(world_size_ + 1, 0);
  for (int r = 0; r < world_size_; ++r) offsets[r + 1] = offsets[r] + lengths[r].item<int64_t>();
  // uint8 sums of one non-zero term per byte cannot overflow.
  at::Tensor bytes = at::zeros({std::max<int64_t>(offsets[world_size_], 1)}, at::kByte);
  if (!mine.empty()) std::memcpy(bytes.data_ptr<uint8_t>() + offsets[rank_], mine.data(), mine.size());
  allreduce(bytes, Reduce::kSum, what + " (bytes)");
  std::vector<std::string> all(world_size_);
  const char* data = reinterpret_cast<const char*>(bytes.data_ptr<uint8_t>());
  for (int r = 0; r < world_size_; ++r) all[r].assign(data + offsets[r], data + offsets[r + 1]);
  return all;
}

void ProcessGroup::barrier(const std::string& what) {
  if (!distributed()) return;
  begin_collective(what);
  try {
    impl_->pg->barrier()->wait();
  } catch (const std::exception& e) {
    fail_collective(what, e);
  }
}

void ProcessGroup::check_same(const std::string& what, const nlohmann::json& value) {
  if (!distributed()) return;
  const std::string key = fmt::format("same/{}", ++impl_->checks);
  std::string theirs;
  try {
    if (is_main()) {
      impl_->store->set(key, bytes(value.dump()));
      return;
    }
    theirs = impl_->get(key);  // waits (up to the timeout) for rank 0 to publish it
  } catch (const std::exception& e) {
    fail_collective(fmt::format("the comparison of {} with rank 0's", what), e);
  }
  const nlohmann::json rank0 = nlohmann::json::parse(theirs, nullptr, false);
  if (rank0 == value) return;
  std::string diff;
  int shown = 0;
  if (rank0.is_object() && value.is_object()) {
    for (auto it = value.begin(); it != value.end() && shown < 4; ++it)
      if (!rank0.contains(it.key()) || rank0[it.key()] != it.value()) {
        diff += fmt::format("{}{} is {} here, {} on rank 0", shown ? "; " : "", it.key(), it.value().dump(),
                            rank0.contains(it.key()) ? rank0[it.key()].dump() : "absent");
        ++shown;
      }
  }
  if (diff.empty()) diff = fmt::format("{} here, {} on rank 0", value.dump(), rank0.dump());
  fail("{}: {} differ from rank 0's ({}); start every rank with the same arguments and the same --out", describe(),
       what, diff);
}

void ProcessGroup::report_failure(const std::string& message) noexcept {
  if (!impl_ || impl_->collective_failed || impl_->reported) return;
  impl_->reported = true;
  try {
    impl_->store->set(impl_->key("failed", rank_), bytes(message));
  } catch (...) {
  }
}

void run_data_parallel(std::shared_ptr<ProcessGroup>& slot, const std::function<void()>& body) {
  slot = ProcessGroup::from_environment();
  if (!slot->is_main() && log_level() == LogLevel::kInfo) set_log_level(LogLevel::kQuiet);
  try {
    body();
  } catch (const std::exception& e) {
    // Errors of the collectives name the rank already; others get it here.
    const std::string message = brief(e);
    const std::string who = slot->describe() + ": ";
    slot->report_failure(message.rfind(who, 0) == 0 ? message : who + message);
    slot.reset();
    throw;
  }
  slot.reset();
}

}  // namespace rad::parallel
