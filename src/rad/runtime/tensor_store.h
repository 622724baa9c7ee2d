// Torch-free access to the tensors of a model for the runtime: safetensors files are memory-mapped
// read-only and tensors are views into the mapping (no copy). Handles a single model.safetensors,
// shards listed in model.safetensors.index.json, or one GGUF file (open_gguf: tensors under their
// Hugging Face names, quantised ones kept as stored).
//
// The files are treated as hostile and parsed by the one fuzzed safetensors parser
// (rad/io/safetensors_header.h, torch-free, shared with the libtorch reader): header length against
// file size, JSON types, shape x dtype size against the byte range (overflow-checked), ranges inside
// the data buffer and not overlapping. Dtypes the runtime cannot compute with are recorded and
// refused only when a tensor is used, so the error names the tensor, its file and its dtype.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

namespace rad::io {
class MappedFile;
class GgufFile;
}

namespace rad::runtime {

// Weight types the runtime computes with. Q8_0 and Q4_0 are ggml's block types (32 values a block:
// an f16 scale and 32 int8 or 16 bytes of 4-bit values; rad/io/gguf_dequant.h), kept as stored.
// The weight types the runtime computes with: floats, and ggml's block types kept as stored (Q8_0,
// Q4_0, Q5_0: blocks of 32; Q4_K, Q6_K: super-blocks of 256, rad/io/gguf_dequant.h has the layouts).
enum class DType { kF32, kBF16, kF16, kQ8_0, kQ4_0, kQ5_0, kQ4_K, kQ6_K };
const char* dtype_name(DType t);  // "F32", "BF16", "F16", "Q8_0", "Q4_0", "Q5_0", "Q4_K", "Q6_K"
bool dtype_is_block(DType t);     // the ggml block types
int64_t dtype_block_elems(DType t);   // values per block: 1 for the float types, 32 or 256 for the block types
size_t dtype_block_bytes(DType t);    // bytes per block: 4, 2, 2, 34, 18, 22, 144, 210
// Bytes of a row of `cols` values (cols a multiple of dtype_block_elems).
inline size_t row_bytes(DType t, int64_t cols) {
  return static_cast<size_t>(cols / dtype_block_elems(t)) * dtype_block_bytes(t);
}

struct TensorView {
  std::string name;
  std::string file;         // path of the safetensors file that holds it
  std::string dtype_text;   // as in the file ("F32", "BF16", "F64", ...; GGUF: ggml's names, "Q8_0", "Q4_K", ...)
  std::vector<int64_t> shape;
  const uint8_t* data = nullptr;  // inside the mapping; not necessarily aligned
  uint64_t bytes = 0;
  bool ggml = false;  // from a GGUF file (dtype_text is a ggml type name; block types allowed)
  int64_t numel() const;
};

class TensorStore {
 public:
  // Opens MODEL_DIR/model.safetensors, or the shards of MODEL_DIR/model.safetensors.index.json.
  static std::unique_ptr<TensorStore> open_dir(const std::string& model_dir);
  // Opens one safetensors file (for tests and tools).
  static std::unique_ptr<TensorStore> open_file(const std::string& path);
  // The tensors of a parsed GGUF file under their Hugging Face names (rad/io/gguf_llama_meta.h):
  // llama names mapped back, other names (a hybrid's SSM tensors) as they are. The Q/K projections'
  // rows are put back in rotate-half order (for the block types too: rows are whole blocks), in
  // buffers the store owns; every other tensor stays a view into the file's mapping.
  static std::unique_ptr<TensorStore> open_gguf(std::shared_ptr<const io::GgufFile> file, int64_t d_head);
  ~TensorStore();

  bool contains(const std::string& name) const { return tensors_.count(name) > 0; }
  // The entry as parsed, without the shape/dtype checks of get() and without marking it used;
  // null when absent (for tools and the fuzz target, which do not know the shapes beforehand).
  const TensorView* find(const std::string& name) const {
    auto it = tensors_.find(name);
    return it == tensors_.end() ? nullptr : &it->second;
  }
  // The tensor, checked to have `shape` and a dtype the runtime supports; marks it used.
  // Throws rad::Error naming the tensor and file otherwise.
  const TensorView& get(const std::string& name, const std::vector<int64_t>& shape, DType* dtype);
  // Names present in the files but never fetched with get(), minus `ignore`.
  std::vector<std::string> unused(const std::set<std::string>& ignore = {}) const;
  const std::string& where() const { return where_; }
  uint64_t mapped_bytes() const;

 private:
  TensorStore() = default;
  void add_file(const std::string& path, const std::set<std::string>* only);
  std::string where_;
  std::vector<std::unique_ptr<io::MappedFile>> files_;
  std::shared_ptr<const io::GgufFile> gguf_;
  std::vector<std::vector<uint8_t>> owned_;  // GGUF Q/K rows in rotate-half order
  std::map<std::string, TensorView> tensors_;
  std::set<std::string> used_;
};

}  // namespace rad::runtime
