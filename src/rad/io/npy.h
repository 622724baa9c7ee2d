// NumPy .npy (format 1.0) reader/writer for float32/64, int64/32/16 and uint8 tensors, so users can load dumps with np.load.
#pragma once

#include <ATen/ATen.h>

#include <string>

namespace rad::io {

// Writes `tensor` (converted to a contiguous CPU tensor; float32, float64, int64, int32, int16 or uint8) atomically.
void save_npy(const std::string& path, const at::Tensor& tensor);

// Reads a C-ordered little-endian .npy of those dtypes (for tests and tools).
at::Tensor load_npy(const std::string& path);

}  // namespace rad::io
