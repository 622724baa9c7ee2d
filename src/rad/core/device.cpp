#include "rad/core/device.h"

#include <torch/cuda.h>
#include <torch/nn/module.h>

#include <cstdlib>

#include "rad/core/error.h"

namespace rad {
namespace {

at::Device& current_device() {
  static at::Device device(at::kCPU);
  return device;
}

// "3" -> 3; anything else (empty, sign, letters, overflow) -> -1.
int parse_index(const std::string& text) {
  if (text.empty() || text.size() > 4) return -1;
  int value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return -1;
    value = value * 10 + (c - '0');
  }
  return value;
}

}  // namespace

bool libtorch_has_cuda() { return at::globalContext().hasCUDART(); }

at::Device parse_device(const std::string& spec, const std::function<const char*(const char*)>& getenv) {
  auto get = [&](const char* name) { return getenv ? getenv(name) : std::getenv(name); };
  if (spec == "cpu") return at::Device(at::kCPU);
  const bool bare = spec == "cuda";
  RAD_CHECK(bare || spec.rfind("cuda:", 0) == 0, "--device: expected cpu, cuda or cuda:N (N a GPU index), got '{}'",
            spec);
  int index = 0;
  if (bare) {
    // One GPU per process under torchrun / `radistill launch`, as torch.cuda.set_device(local_rank).
    const char* local_rank = get("LOCAL_RANK");
    if (local_rank && *local_rank) {
      index = parse_index(local_rank);
      RAD_CHECK(index >= 0, "--device cuda: LOCAL_RANK must be a non-negative integer, got '{}'", local_rank);
    }
  } else {
    index = parse_index(spec.substr(5));
    RAD_CHECK(index >= 0, "--device {}: expected cuda:N with N a GPU index (0, 1, ...)", spec);
  }
  RAD_CHECK(libtorch_has_cuda(),
            "--device {}: this radistill runs on a libtorch without CUDA (Debian's is CPU-only); rebuild against a "
            "CUDA libtorch: cmake -DRAD_CUDA=ON -DTorch_DIR=<libtorch>/share/cmake/Torch (README, \"GPUs\")",
            spec);
  const int count = static_cast<int>(torch::cuda::device_count());
  RAD_CHECK(count > 0, "--device {}: libtorch has CUDA but sees no GPU (driver, CUDA_VISIBLE_DEVICES?)", spec);
  RAD_CHECK(index < count, "--device {}: GPU index {} is not visible; this process sees {} GPU{} (0..{})", spec, index,
            count, count == 1 ? "" : "s", count - 1);
  return at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(index));
}

void set_compute_device(const at::Device& device) { current_device() = device; }

const at::Device& compute_device() { return current_device(); }

at::Tensor to_compute_device(const at::Tensor& t) {
  return t.device() == compute_device() ? t : t.to(compute_device());
}

void to_compute_device(torch::nn::Module& module) {
  if (compute_device().is_cpu()) return;
  module.to(compute_device());
}

}  // namespace rad
