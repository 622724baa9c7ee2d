// Data-parallel training across processes on torch.distributed's own engine (c10d): a TCPStore for
// rendezvous and a ProcessGroupGloo for the collectives (CPU; a CUDA libtorch would add NCCL).
//
// Processes find each other through the torchrun environment (RANK, WORLD_SIZE, LOCAL_RANK,
// MASTER_ADDR, MASTER_PORT), so torchrun, Slurm or Kubernetes wrappers and `radistill launch` all
// work. Without it a ProcessGroup is a single process and every collective is a no-op.
//
// Failures: every collective has a bounded timeout (RADISTILL_DIST_TIMEOUT_S, default 900 s). When
// one fails (a peer died, exited early or hangs), the error is a rad::Error naming this rank, what
// was being done, and, from what the peers left in the store, which rank is at fault.
#pragma once

#include <ATen/ATen.h>

#include <chrono>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace rad::parallel {

// The torchrun environment of this process.
struct LaunchEnv {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;
  std::string master_addr;
  int master_port = 0;
};

// Reads RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT through `get` (std::getenv when
// null). None of them set, or WORLD_SIZE=1: a single process. A partial or malformed set is an error
// naming the variable and what was expected.
LaunchEnv read_launch_env(const std::function<const char*(const char*)>& get = nullptr);

// RADISTILL_DIST_TIMEOUT_S (seconds, > 0) or 900 s: how long any collective or the rendezvous may wait.
std::chrono::milliseconds collective_timeout();

enum class Reduce { kSum, kMean };

class ProcessGroup {
 public:
  // A single process: rank 0 of 1, collectives are no-ops.
  ProcessGroup();
  ~ProcessGroup();
  ProcessGroup(const ProcessGroup&) = delete;
  ProcessGroup& operator=(const ProcessGroup&) = delete;

  // Joins the group `env` describes (single process when env.world_size == 1). Waits at most
  // `timeout` for every rank to arrive; the same timeout bounds every later collective.
  static std::shared_ptr<ProcessGroup> connect(const LaunchEnv& env, std::chrono::milliseconds timeout);
  // connect(read_launch_env(), collective_timeout()).
  static std::shared_ptr<ProcessGroup> from_environment();

  int rank() const { return rank_; }
  int world_size() const { return world_size_; }
  bool is_main() const { return rank_ == 0; }
  bool distributed() const { return world_size_ > 1; }
  std::string describe() const;  // "rank 1 of 2"

  // Reduces the gradients of `params` across ranks, flattened into one buffer so a step costs one
  // collective; a parameter without a gradient counts as zeros (and gets one when a peer has it).
  // `extra` (float32, 1-D, optional) rides in the same buffer, e.g. this rank's share of the loss.
  // `what` names the step in errors.
  void allreduce_gradients(const std::vector<at::Tensor>& params, Reduce op, at::Tensor* extra,
                           const std::string& what);
  // Reduces `t` (any shape) across ranks in place.
  void allreduce(at::Tensor& t, Reduce op, const std::string& what);
  // Copies `tensors` of rank `root` into every other rank's, in one collective.
  void broadcast(const std::vector<at::Tensor>& tensors, int root, const std::string& what);
  void barrier(const std::string& what);
  // Every rank's `mine`, indexed by rank, on every rank (e.g. each rank's share of an evaluation as
  // JSON text). Two collectives: the lengths, then the bytes, each rank writing only its own slot
  // of a zeroed buffer so the sum is exact. A single process gets {mine}.
  std::vector<std::string> allgather_strings(const std::string& mine, const std::string& what);

  // Checks that `value` (e.g. the training settings) is the same on every rank as on rank 0: rank 0
  // publishes its value in the store, every other rank compares and, when they differ, throws a
  // rad::Error naming `what`, this rank and the first fields that differ (rank 0 then fails at its
  // next collective with that message). All ranks must call it in the same order.
  void check_same(const std::string& what, const nlohmann::json& value);

  // Leaves `message` in the store so that peers whose collectives now fail can name this rank and
  // say why. Never throws. Does nothing when this rank's own failure was a failed collective (it
  // is a victim, not the cause).
  void report_failure(const std::string& message) noexcept;

 private:
  struct Impl;
  [[noreturn]] void fail_collective(const std::string& what, const std::exception& e);
  std::string diagnose_peers() const;  // the peers at fault, from the store ("" when none is found)
  void begin_collective(const std::string& what);

  int rank_ = 0;
  int world_size_ = 1;
  std::unique_ptr<Impl> impl_;
};

// Joins the group the environment describes into `slot`, runs `body`, then leaves (resets `slot`).
// Ranks other than 0 print warnings and errors only. A failure of `body` is left in the store for
// the peers (report_failure) and rethrown.
void run_data_parallel(std::shared_ptr<ProcessGroup>& slot, const std::function<void()>& body);

}  // namespace rad::parallel
