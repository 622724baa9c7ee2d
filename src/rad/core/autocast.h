// Autocast's thread-local state for the CPU and CUDA, over the two spellings libtorch has had:
// functions per device (is_cpu_enabled, set_enabled for CUDA, ...: libtorch 1.x; from 2.4 they
// print a deprecation warning on every call) and a device type argument (is_autocast_enabled(at::kCPU),
// ...: libtorch 2.4 on). Everything in radistill that touches autocast goes through here.
#pragma once

#include <ATen/autocast_mode.h>
#include <torch/version.h>

namespace rad {

#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
inline bool autocast_enabled(at::DeviceType d) { return at::autocast::is_autocast_enabled(d); }
inline at::ScalarType autocast_dtype(at::DeviceType d) { return at::autocast::get_autocast_dtype(d); }
inline void set_autocast(at::DeviceType d, bool enabled, at::ScalarType dtype) {
  at::autocast::set_autocast_dtype(d, dtype);
  at::autocast::set_autocast_enabled(d, enabled);
}
#else
inline bool autocast_enabled(at::DeviceType d) {
  return d == at::kCUDA ? at::autocast::is_enabled() : at::autocast::is_cpu_enabled();
}
inline at::ScalarType autocast_dtype(at::DeviceType d) {
  return d == at::kCUDA ? at::autocast::get_autocast_gpu_dtype() : at::autocast::get_autocast_cpu_dtype();
}
inline void set_autocast(at::DeviceType d, bool enabled, at::ScalarType dtype) {
  if (d == at::kCUDA) {
    at::autocast::set_autocast_gpu_dtype(dtype);
    at::autocast::set_enabled(enabled);
  } else {
    at::autocast::set_autocast_cpu_dtype(dtype);
    at::autocast::set_cpu_enabled(enabled);
  }
}
#endif

// The CPU's and CUDA's autocast settings of this thread, to carry into another thread (autograd runs
// a CUDA backward on a thread of its own, where autocast is off) or to put back.
struct AutocastState {
  bool cpu = false, cuda = false;
  at::ScalarType cpu_dtype = at::kBFloat16, cuda_dtype = at::kHalf;

  static AutocastState current() {
    return {autocast_enabled(at::kCPU), autocast_enabled(at::kCUDA), autocast_dtype(at::kCPU),
            autocast_dtype(at::kCUDA)};
  }
  void apply() const {
    set_autocast(at::kCPU, cpu, cpu_dtype);
    set_autocast(at::kCUDA, cuda, cuda_dtype);
  }
  bool any() const { return cpu || cuda; }
};

}  // namespace rad
