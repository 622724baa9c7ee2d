// The device models compute on: the global `--device` flag (cpu by default; cuda or cuda:N with a
// CUDA libtorch, see CMake's RAD_CUDA). Commands load or build their models on the CPU, then move
// what computes with `to_compute_device`; data is made on the CPU and moved per batch. Files are
// always written from CPU copies (io::save_safetensors).
#pragma once

#include <ATen/ATen.h>

#include <functional>
#include <string>

namespace torch::nn {
class Module;
}

namespace rad {

// "cpu", "cuda" or "cuda:N" -> a device this process can use. A bare "cuda" under a data-parallel
// launch is cuda:LOCAL_RANK (one GPU per process, as torchrun users expect). Throws rad::Error naming
// the flag and the value when it is malformed, when this build's libtorch has no CUDA, or when the
// index is not a visible GPU. `getenv` defaults to std::getenv.
at::Device parse_device(const std::string& spec, const std::function<const char*(const char*)>& getenv = nullptr);

// Whether the libtorch this binary runs on was built with CUDA (a CPU-only one, such as Debian's,
// cannot use any GPU).
bool libtorch_has_cuda();

void set_compute_device(const at::Device& device);
const at::Device& compute_device();  // kCPU unless set

// `t` on compute_device() (no copy when it is there already).
at::Tensor to_compute_device(const at::Tensor& t);
// Moves a model's parameters and buffers to compute_device(); nothing happens on the CPU (a
// memory-mapped teacher stays mapped).
void to_compute_device(torch::nn::Module& module);

}  // namespace rad
