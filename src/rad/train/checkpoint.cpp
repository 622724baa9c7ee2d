#include "rad/train/checkpoint.h"

#include <fcntl.h>
#include <torch/serialize.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "rad/core/atomic_file.h"
#include "rad/core/device.h"
#include "rad/core/error.h"
#include "rad/io/checkpoint.h"
#include "rad/io/hf_config.h"

namespace rad {
namespace fs = std::filesystem;

namespace {
void fsync_path(const fs::path& p, bool directory) {
  int fd = ::open(p.c_str(), directory ? (O_RDONLY | O_DIRECTORY) : O_RDONLY);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
}
}  // namespace

void save_training_checkpoint(const std::string& run_dir, int64_t step, CausalLM& model,
                              torch::optim::Optimizer& optimizer, const nlohmann::json& state,
                              const ModelSaver& save_model) {
  fs::path root = fs::path(run_dir) / "checkpoints";
  ensure_directory(root.string());
  std::string name = fmt::format("step-{:08d}", step);
  fs::path dir = root / name;
  fs::path tmp = root / (name + ".partial");
  std::error_code ec;
  fs::remove_all(tmp, ec);
  ensure_directory(tmp.string());
  if (save_model) save_model(model, tmp.string());
  else io::save_causal_lm(model, tmp.string());
  std::string opt_path = (tmp / "optimizer.pt").string();
  try {
    torch::save(optimizer, opt_path);
  } catch (const c10::Error& e) {
    fail("cannot write optimizer state {}: {}", opt_path, e.what_without_backtrace());
  }
  fsync_path(opt_path, false);
  write_text_atomic((tmp / "state.json").string(), state.dump(2) + "\n");
  fsync_path(tmp, true);
  fs::remove_all(dir, ec);
  fs::rename(tmp, dir, ec);
  if (ec) fail("cannot rename {} to {}: {}", tmp.string(), dir.string(), ec.message());
  fsync_path(root, true);
  write_text_atomic((root / "latest").string(), name + "\n");
  // Only now is it safe to drop older checkpoints.
  for (const auto& entry : fs::directory_iterator(root)) {
    std::string n = entry.path().filename().string();
    if (entry.is_directory() && n != name && n.rfind("step-", 0) == 0) fs::remove_all(entry.path(), ec);
  }
}

std::optional<std::string> latest_checkpoint(const std::string& run_dir) {
  fs::path root = fs::path(run_dir) / "checkpoints";
  fs::path pointer = root / "latest";
  if (!fs::exists(pointer)) return std::nullopt;
  std::string name = read_text_file(pointer.string());
  while (!name.empty() && (name.back() == '\n' || name.back() == ' ')) name.pop_back();
  RAD_CHECK(name.rfind("step-", 0) == 0 && name.find('/') == std::string::npos,
            "{}: does not name a checkpoint (\"{}\")", pointer.string(), name);
  fs::path dir = root / name;
  RAD_CHECK(fs::is_directory(dir), "{} names {}, which does not exist", pointer.string(), dir.string());
  return dir.string();
}

std::optional<std::string> open_run_dir(const std::string& run_dir, bool resume, const std::string& what) {
  ensure_directory(run_dir);
  auto existing = latest_checkpoint(run_dir);
  RAD_CHECK(!existing || resume, "{} already holds a {} (checkpoint {}); pass --resume to continue it or choose another --out",
            run_dir, what, existing.value_or(""));
  return existing;
}

nlohmann::json load_training_checkpoint(const std::string& checkpoint_dir, CausalLM& model,
                                        torch::optim::Optimizer& optimizer) {
  auto tensors = io::read_model_tensors(checkpoint_dir);
  io::load_parameters_strict(*model, tensors, checkpoint_dir);
  std::string opt_path = (fs::path(checkpoint_dir) / "optimizer.pt").string();
  RAD_CHECK(fs::exists(opt_path), "{}: missing", opt_path);
  try {
    torch::load(optimizer, opt_path, compute_device());  // its state where the parameters now are
  } catch (const c10::Error& e) {
    fail("cannot read optimizer state {}: {}", opt_path, e.what_without_backtrace());
  }
  std::string state_path = (fs::path(checkpoint_dir) / "state.json").string();
  try {
    return nlohmann::json::parse(read_text_file(state_path));
  } catch (const nlohmann::json::exception& e) {
    fail("{}: not valid JSON: {}", state_path, e.what());
  }
}

void truncate_metrics_log(const std::string& path, int64_t step) {
  if (!fs::exists(path)) return;
  std::istringstream in(read_text_file(path));
  std::string line, kept;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    try {
      auto j = nlohmann::json::parse(line);
      if (j.contains("step") && j["step"].get<int64_t>() > step) continue;
    } catch (const nlohmann::json::exception&) {
      continue;  // a line cut short by a crash
    }
    kept += line + "\n";
  }
  write_text_atomic(path, kept);
}

void append_jsonl(const std::string& path, const nlohmann::json& record) {
  std::string line = record.dump() + "\n";
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) fail("cannot open {} for appending: {}", path, std::strerror(errno));
  try {
    write_all(fd, line.data(), line.size(), path);
  } catch (...) {
    ::close(fd);
    throw;
  }
  ::fsync(fd);
  ::close(fd);
}

}  // namespace rad
