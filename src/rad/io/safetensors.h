// Reader and writer for the safetensors format (Hugging Face) with libtorch tensors.
//
// The layout is parsed and validated by the torch-free parser in rad/io/safetensors_header.h (the
// one the runtime's TensorStore uses too, and the fuzzed one); this reader adds the dtypes ATen can
// hold: a tensor of another dtype the format defines (U16, U32, U64, F8_*) is refused at open,
// naming the tensor. Data is memory-mapped (rad/io/mapped_file.h), not copied.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "rad/io/mapped_file.h"
#include "rad/io/safetensors_header.h"

namespace rad::io {

class SafetensorsFile {
 public:
  // Opens, memory-maps and validates `path`. Throws rad::Error on any problem.
  static std::shared_ptr<SafetensorsFile> open(const std::string& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  const std::vector<SafetensorsEntry>& entries() const { return entries_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  bool contains(const std::string& name) const { return index_.count(name) > 0; }
  const SafetensorsEntry& entry(const std::string& name) const;

  // A CPU tensor viewing the mapped bytes (it keeps the mapping alive); copied only when the data
  // is not aligned to its element size. The mapping is private copy-on-write: writing to the
  // tensor never changes the file.
  at::Tensor tensor(const std::string& name) const;

 private:
  SafetensorsFile() = default;
  std::string path_;
  std::unique_ptr<MappedFile> map_;
  const uint8_t* data_ = nullptr;  // start of the data buffer
  uint64_t data_size_ = 0;
  std::vector<SafetensorsEntry> entries_;
  std::map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
  std::weak_ptr<SafetensorsFile> self_;
};

// Writes tensors (CPU; any layout, written contiguous) atomically to `path`, in name order.
void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata = {{"format", "pt"}});

// dtype name <-> ATen scalar type. Throws for names we do not support.
at::ScalarType safetensors_dtype_to_scalar(const std::string& dtype, const std::string& context);
std::string scalar_to_safetensors_dtype(at::ScalarType type);
size_t safetensors_dtype_size(const std::string& dtype);  // 0 when ATen cannot hold it

}  // namespace rad::io
