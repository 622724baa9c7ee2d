// NumPy .npy (format 1.0) writer for float32/int64 tensors, so users can load dumps with np.load.
#pragma once

#include <ATen/ATen.h>

#include <string>

namespace rad::io {

// Writes `tensor` (converted to a contiguous CPU tensor; float32, float64, int64 or int32) atomically.
void save_npy(const std::string& path, const at::Tensor& tensor);

// Reads a C-ordered little-endian .npy of those dtypes (for tests and tools).
at::Tensor load_npy(const std::string& path);

}  // namespace rad::io
