// One memory mapping of a whole regular file, shared by every reader of mapped formats
// (safetensors in rad/io/safetensors.cpp and rad/runtime/tensor_store.cpp, GGUF in rad/io/gguf.cpp)
// so that opening, the regular-file check, the empty-file case and the error wording are written once.
// Torch-free: the runtime links it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace rad::io {

class MappedFile {
 public:
  // Maps all of `path`. Private mapping: with `writable`, pages written through mutable_data() are
  // copy-on-write and never reach the file (the libtorch reader hands out writable tensors viewing
  // the bytes). An empty file is not mapped (mmap refuses length 0): data() is null, size() 0, and
  // the caller's size check reports it. Throws rad::Error naming the file when it cannot be opened,
  // is not a regular file, or cannot be mapped.
  static std::unique_ptr<MappedFile> open(const std::string& path, bool writable = false);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  uint8_t* mutable_data() const { return writable_ ? data_ : nullptr; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  MappedFile() = default;
  std::string path_;
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
  bool writable_ = false;
};

}  // namespace rad::io
