// The one parser of the safetensors layout (Hugging Face), torch-free so that both readers use it:
// rad/io/safetensors.cpp (libtorch tensors, training side) and rad/runtime/tensor_store.cpp (the
// torch-free runtime behind generate, chat, bench and serve). It is the code the `safetensors` and
// `tensor_store` fuzz targets exercise (tests/fuzz/entry_points.cpp, docs/fuzzing.md).
//
// Layout: 8-byte little-endian header length N, N bytes of JSON header
// {"__metadata__": {str: str}, name: {"dtype", "shape", "data_offsets": [begin, end]}}, then the
// data buffer; offsets are relative to the start of the data buffer.
//
// The file is treated as hostile: the header length against the file size, the JSON's validity and
// types, dtype names, shape x dtype size against the byte range (with overflow checks), that every
// range lies inside the data buffer, and that no two ranges overlap. Any violation throws rad::Error
// naming the file, the tensor and the field.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
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

// Element size of every dtype the format defines (F64 ... BOOL, the unsigned integers and the two
// F8 kinds), 0 for names it does not. Which of them a reader can compute with is the reader's
// business: the header parser only needs the size to check the byte ranges.
size_t safetensors_element_size(const std::string& dtype);

// A parsed and validated file: the entries in header order, the metadata, and where the data
// buffer starts (8 + header length) and how long it is.
struct SafetensorsLayout {
  std::vector<SafetensorsEntry> entries;
  std::map<std::string, std::string> metadata;
  uint64_t data_offset = 0;
  uint64_t data_size = 0;
};

// Parses the whole file's bytes (`path` only names it in errors).
SafetensorsLayout parse_safetensors(const std::string& path, const uint8_t* bytes, size_t size);

// Parses and validates a header given as raw bytes; `data_size` is the size of the data buffer
// that follows the header.
void parse_safetensors_header(const std::string& path, const char* header, size_t header_size,
                              uint64_t data_size, std::vector<SafetensorsEntry>* entries,
                              std::map<std::string, std::string>* metadata);

}  // namespace rad::io
