// Reader and writer for GGUF (the llama.cpp / ggml model file format), versions 2 and 3.
//
// Layout (all little-endian): magic "GGUF", uint32 version, uint64 tensor count, uint64 metadata
// count; then the metadata key/value pairs (key: uint64 length + UTF-8 bytes; uint32 value type;
// value); then one info record per tensor (name, uint32 n_dims, uint64 dims[n_dims] innermost
// first, uint32 ggml type, uint64 offset into the data section); then padding to the alignment
// (`general.alignment`, default 32) and the data section. Every tensor offset is a multiple of the
// alignment.
//
// The reader treats the file as hostile: every count, length and offset is checked against the bytes
// that are actually there before anything is allocated, types must be known, dims must not overflow,
// and every tensor's bytes must lie inside the data section without overlapping another. Any
// violation throws rad::Error naming the file and the field. The file is memory-mapped, not copied.
//
// No libtorch here: dequantisation is in gguf_dequant.h, the Llama mapping in gguf_llama.h.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "rad/io/mapped_file.h"

namespace rad::io {

// Metadata value types (numbering fixed by the format).
enum class GgufType : uint32_t {
  kUint8 = 0,
  kInt8 = 1,
  kUint16 = 2,
  kInt16 = 3,
  kUint32 = 4,
  kInt32 = 5,
  kFloat32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kUint64 = 10,
  kInt64 = 11,
  kFloat64 = 12,
};
const char* gguf_type_name(GgufType type);

// One metadata value. A scalar is a one-element vector of its kind; an array holds its elements in
// the vector of its element type's kind (nested arrays in `arrays`).
struct GgufValue {
  GgufType type = GgufType::kUint32;
  GgufType array_type = GgufType::kUint8;  // element type, when type == kArray
  std::vector<uint64_t> uints;            // kUint8/16/32/64
  std::vector<int64_t> ints;              // kInt8/16/32/64 and kBool (0/1)
  std::vector<double> floats;             // kFloat32/64
  std::vector<std::string> strings;       // kString
  std::vector<GgufValue> arrays;          // kArray elements of an array of arrays

  static GgufValue u32(uint32_t v);
  static GgufValue u64(uint64_t v);
  static GgufValue i32(int32_t v);
  static GgufValue f32(float v);
  static GgufValue boolean(bool v);
  static GgufValue string(std::string v);
  static GgufValue string_array(std::vector<std::string> v);
  static GgufValue i32_array(const std::vector<int32_t>& v);

  bool is_array() const { return type == GgufType::kArray; }
  // Number of elements (1 for a scalar).
  size_t size() const;
};

// ggml tensor types (numbering fixed by ggml). Only the ones whose block layout we know are listed;
// any other number in a file is refused.
enum class GgmlType : uint32_t {
  kF32 = 0,
  kF16 = 1,
  kQ4_0 = 2,
  kQ4_1 = 3,
  kQ5_0 = 6,
  kQ5_1 = 7,
  kQ8_0 = 8,
  kQ8_1 = 9,
  kQ2_K = 10,
  kQ3_K = 11,
  kQ4_K = 12,
  kQ5_K = 13,
  kQ6_K = 14,
  kQ8_K = 15,
  kI8 = 24,
  kI16 = 25,
  kI32 = 26,
  kI64 = 27,
  kF64 = 28,
  kBF16 = 30,
};

struct GgmlTypeInfo {
  const char* name;
  uint64_t block_elems;  // elements per block
  uint64_t block_bytes;  // bytes per block
};
// nullptr when `type` is not a ggml type we know.
const GgmlTypeInfo* ggml_type_info(uint32_t type);
std::string ggml_type_name(uint32_t type);  // "Q4_K", or "type 42" when unknown
// The type named `name` in any case ("q4_k", "Q4_K", "bf16"); nullopt when none is.
std::optional<GgmlType> ggml_type_from_name(const std::string& name);

struct GgufTensorInfo {
  std::string name;
  std::vector<uint64_t> dims;  // ggml order: dims[0] is the innermost (row length)
  GgmlType type = GgmlType::kF32;
  uint64_t offset = 0;  // into the data section
  uint64_t n_elems = 0;
  uint64_t n_bytes = 0;
  // The shape in row-major (PyTorch / safetensors) order: dims reversed.
  std::vector<int64_t> shape() const;
};

constexpr uint32_t kGgufDefaultAlignment = 32;
constexpr uint32_t kGgufMaxDims = 4;  // GGML_MAX_DIMS

class GgufFile {
 public:
  // Opens, memory-maps and validates `path`. Throws rad::Error on any problem.
  static std::shared_ptr<GgufFile> open(const std::string& path);
  // Parses bytes already in memory (tests, fuzzing); `bytes` must outlive the object.
  static std::shared_ptr<GgufFile> parse(const std::string& path, const uint8_t* bytes, size_t size);
  ~GgufFile();
  GgufFile(const GgufFile&) = delete;
  GgufFile& operator=(const GgufFile&) = delete;

  const std::string& path() const { return path_; }
  uint32_t version() const { return version_; }
  uint32_t alignment() const { return alignment_; }
  size_t file_size() const { return size_; }
  // Keys in file order, and values by key.
  const std::vector<std::string>& keys() const { return keys_; }
  const std::map<std::string, GgufValue>& metadata() const { return metadata_; }
  bool has(const std::string& key) const { return metadata_.count(key) > 0; }
  const GgufValue* find(const std::string& key) const;

  // Typed getters: throw rad::Error naming the file and key when missing or of another type. The
  // integer getters accept any integer type whose value fits.
  uint64_t get_uint(const std::string& key) const;
  int64_t get_int(const std::string& key) const;
  double get_float(const std::string& key) const;  // float32/64 (or an integer)
  bool get_bool(const std::string& key) const;
  const std::string& get_string(const std::string& key) const;
  const std::vector<std::string>& get_string_array(const std::string& key) const;
  std::vector<int64_t> get_int_array(const std::string& key) const;  // any integer element type
  std::optional<uint64_t> opt_uint(const std::string& key) const;
  std::optional<double> opt_float(const std::string& key) const;
  std::optional<bool> opt_bool(const std::string& key) const;
  std::optional<std::string> opt_string(const std::string& key) const;

  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
  bool has_tensor(const std::string& name) const { return tensor_index_.count(name) > 0; }
  const GgufTensorInfo& tensor(const std::string& name) const;  // throws naming the file when absent
  const uint8_t* tensor_data(const GgufTensorInfo& info) const { return data_ + info.offset; }

 private:
  GgufFile() = default;
  void parse_all();
  std::string path_;
  std::unique_ptr<MappedFile> map_;  // null for parse() of caller-owned bytes
  const uint8_t* bytes_ = nullptr;
  size_t size_ = 0;
  const uint8_t* data_ = nullptr;  // start of the data section
  uint64_t data_size_ = 0;
  uint32_t version_ = 0;
  uint32_t alignment_ = kGgufDefaultAlignment;
  std::vector<std::string> keys_;
  std::map<std::string, GgufValue> metadata_;
  std::vector<GgufTensorInfo> tensors_;
  std::map<std::string, size_t> tensor_index_;
};

// Builds a GGUF file (version 3). Tensors are written in the order added, each at an offset aligned
// to `alignment`. add_tensor takes any known ggml type (a block type's rows must be whole blocks):
// the bytes are the caller's, row-major, and must stay alive until write().
class GgufWriter {
 public:
  explicit GgufWriter(uint32_t alignment = kGgufDefaultAlignment);
  void set(const std::string& key, GgufValue value);  // replaces an earlier value of the same key
  // `shape` in row-major order (as PyTorch); stored reversed in ggml order.
  void add_tensor(const std::string& name, GgmlType type, const std::vector<int64_t>& shape, const void* data,
                  uint64_t n_bytes);
  // Writes atomically (temp file + rename).
  void write(const std::string& path) const;
  // The whole file in memory (tests, fuzz seeds).
  std::string to_bytes() const;

 private:
  struct Tensor {
    std::string name;
    GgmlType type;
    std::vector<uint64_t> dims;
    const void* data;
    uint64_t n_bytes;
  };
  std::string header_bytes(std::vector<uint64_t>* offsets) const;
  uint32_t alignment_;
  std::vector<std::pair<std::string, GgufValue>> kv_;
  std::vector<Tensor> tensors_;
};

}  // namespace rad::io
