// Reader and writer for the safetensors format (Hugging Face).
//
// Layout: 8-byte little-endian header length N, N bytes of JSON header
// {"__metadata__": {str: str}, name: {"dtype", "shape", "data_offsets": [begin, end]}}, then the
// data buffer; offsets are relative to the start of the data buffer.
//
// The reader treats the file as hostile: it checks the header length against the file size, the
// JSON's validity and types, dtype names, shape x dtype size against the byte range (with overflow
// checks), that every range lies inside the data buffer, and that no two ranges overlap. Any
// violation throws rad::Error naming the file and tensor. Data is memory-mapped, not copied.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace rad::io {

struct SafetensorsEntry {
  std::string name;
  std::string dtype;             // as in the file: "F32", "BF16", ...
  std::vector<int64_t> shape;
  uint64_t begin = 0;            // byte offsets into the data buffer
  uint64_t end = 0;
};

// Maximum header size we accept (the format's reference implementation uses 100 MB).
constexpr uint64_t kMaxSafetensorsHeaderBytes = 100ull * 1024 * 1024;

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
  void* map_ = nullptr;
  size_t map_size_ = 0;
  const uint8_t* data_ = nullptr;  // start of the data buffer
  uint64_t data_size_ = 0;
  std::vector<SafetensorsEntry> entries_;
  std::map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
  std::weak_ptr<SafetensorsFile> self_;
};

// Parses and validates a header given as raw bytes (exposed for tests and fuzzing).
// `data_size` is the size of the data buffer that follows the header.
void parse_safetensors_header(const std::string& path, const char* header, size_t header_size,
                              uint64_t data_size, std::vector<SafetensorsEntry>* entries,
                              std::map<std::string, std::string>* metadata);

// Writes tensors (CPU; any layout, written contiguous) atomically to `path`, in name order.
void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata = {{"format", "pt"}});

// dtype name <-> ATen scalar type. Throws for names we do not support.
at::ScalarType safetensors_dtype_to_scalar(const std::string& dtype, const std::string& context);
std::string scalar_to_safetensors_dtype(at::ScalarType type);
size_t safetensors_dtype_size(const std::string& dtype);  // 0 when unknown

}  // namespace rad::io
