#include "rad/runtime/tensor_store.h"

#include <cstring>
#include <filesystem>

#include "rad/core/error.h"
#include "rad/io/gguf.h"
#include "rad/io/gguf_llama_meta.h"
#include "rad/io/mapped_file.h"
#include "rad/io/safetensors_header.h"
#include "rad/io/shard_index.h"

namespace rad::runtime {
namespace fs = std::filesystem;

const char* dtype_name(DType t) {
  switch (t) {
    case DType::kF32: return "F32";
    case DType::kBF16: return "BF16";
    case DType::kF16: return "F16";
    case DType::kQ8_0: return "Q8_0";
    case DType::kQ4_0: return "Q4_0";
    case DType::kQ5_0: return "Q5_0";
    case DType::kQ4_K: return "Q4_K";
    case DType::kQ6_K: return "Q6_K";
  }
  return "?";
}

bool dtype_is_block(DType t) { return t != DType::kF32 && t != DType::kBF16 && t != DType::kF16; }
int64_t dtype_block_elems(DType t) {
  if (t == DType::kQ4_K || t == DType::kQ6_K) return 256;
  return dtype_is_block(t) ? 32 : 1;
}
size_t dtype_block_bytes(DType t) {
  switch (t) {
    case DType::kF32: return 4;
    case DType::kBF16:
    case DType::kF16: return 2;
    case DType::kQ8_0: return 34;
    case DType::kQ4_0: return 18;
    case DType::kQ5_0: return 22;
    case DType::kQ4_K: return 144;
    case DType::kQ6_K: return 210;
  }
  return 0;
}

int64_t TensorView::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

namespace {
std::string shape_text(const std::vector<int64_t>& s) {
  std::string t = "[";
  for (size_t i = 0; i < s.size(); ++i) t += (i ? ", " : "") + std::to_string(s[i]);
  return t + "]";
}
}  // namespace

TensorStore::~TensorStore() = default;

uint64_t TensorStore::mapped_bytes() const {
  uint64_t n = gguf_ ? gguf_->file_size() : 0;
  for (const auto& f : files_) n += f->size();
  return n;
}

void TensorStore::add_file(const std::string& path, const std::set<std::string>* only) {
  files_.push_back(io::MappedFile::open(path));
  const io::MappedFile& f = *files_.back();
  // The one validating parser (rad/io/safetensors_header.h, fuzzed): every entry is checked, also
  // those a shard index assigns elsewhere and dtypes the runtime cannot compute with (refused in
  // get(), where the error can name the tensor that is needed).
  io::SafetensorsLayout layout = io::parse_safetensors(path, f.data(), f.size());
  const uint8_t* data = f.data() + layout.data_offset;
  for (auto& e : layout.entries) {
    if (only != nullptr && only->count(e.name) == 0) continue;
    RAD_CHECK(tensors_.count(e.name) == 0, "{}: tensor \"{}\" appears in more than one file", path, e.name);
    TensorView t;
    t.name = e.name;
    t.file = path;
    t.dtype_text = std::move(e.dtype);
    t.shape = std::move(e.shape);
    t.data = data + e.begin;
    t.bytes = e.end - e.begin;
    tensors_[e.name] = std::move(t);
  }
}

std::unique_ptr<TensorStore> TensorStore::open_file(const std::string& path) {
  std::unique_ptr<TensorStore> s(new TensorStore());
  s->where_ = path;
  s->add_file(path, nullptr);
  return s;
}

std::unique_ptr<TensorStore> TensorStore::open_dir(const std::string& model_dir) {
  io::ShardIndex index = io::read_shard_index(model_dir);
  std::unique_ptr<TensorStore> s(new TensorStore());
  s->where_ = model_dir;
  if (!index.single_file.empty()) {
    s->add_file(index.single_file, nullptr);
    return s;
  }
  for (const auto& [shard, names] : index.shards) {
    s->add_file(shard, &names);
    for (const auto& name : names)
      RAD_CHECK(s->tensors_.count(name) > 0, "{}: tensor \"{}\" is mapped to {} but that file does not hold it",
                index.index_path, name, fs::path(shard).filename().string());
  }
  return s;
}

std::unique_ptr<TensorStore> TensorStore::open_gguf(std::shared_ptr<const io::GgufFile> file, int64_t d_head) {
  std::unique_ptr<TensorStore> s(new TensorStore());
  s->where_ = file->path();
  for (const io::GgufTensorInfo& info : file->tensors()) {
    std::string name = io::gguf_to_hf_name(info.name);
    if (name.empty()) name = info.name;
    RAD_CHECK(s->tensors_.count(name) == 0, "{}: tensors \"{}\" and another both stand for \"{}\"", file->path(),
              info.name, name);
    TensorView t;
    t.name = name;
    t.file = file->path();
    t.dtype_text = io::ggml_type_name(static_cast<uint32_t>(info.type));
    t.shape = info.shape();
    t.data = file->tensor_data(info);
    t.bytes = info.n_bytes;
    t.ggml = true;
    const bool rope_rows = name.find("self_attn.q_proj.") != std::string::npos ||
                           name.find("self_attn.k_proj.") != std::string::npos;
    if (rope_rows) {
      // Rows of whole blocks, so a quantised row moves as its bytes. n_bytes = rows x row bytes.
      const int64_t rows = t.shape.empty() ? 0 : t.shape[0];
      RAD_CHECK(rows > 0 && rows % d_head == 0 && t.bytes % static_cast<uint64_t>(rows) == 0,
                "{}: tensor \"{}\" has {} rows, not whole heads of {} (shape {})", file->path(), info.name, rows,
                d_head, shape_text(t.shape));
      RAD_CHECK(t.bytes > 0, "{}: tensor \"{}\" holds no bytes (shape {})", file->path(), info.name,
                shape_text(t.shape));
      const size_t rb = t.bytes / static_cast<uint64_t>(rows);
      std::vector<uint8_t> hf(t.bytes);
      for (int64_t r = 0; r < rows; ++r)
        std::memcpy(hf.data() + static_cast<size_t>(io::rope_row_gguf_to_hf(r, d_head)) * rb, t.data + r * rb, rb);
      s->owned_.push_back(std::move(hf));
      t.data = s->owned_.back().data();
    }
    s->tensors_[name] = std::move(t);
  }
  s->gguf_ = std::move(file);
  return s;
}

const TensorView& TensorStore::get(const std::string& name, const std::vector<int64_t>& shape, DType* dtype) {
  auto it = tensors_.find(name);
  RAD_CHECK(it != tensors_.end(), "{}: tensor \"{}\" is missing (expected shape {})", where_, name, shape_text(shape));
  const TensorView& t = it->second;
  RAD_CHECK(t.shape == shape, "{}: tensor \"{}\" has shape {}, expected {}", t.file, name, shape_text(t.shape),
            shape_text(shape));
  if (t.dtype_text == "F32") *dtype = DType::kF32;
  else if (t.dtype_text == "BF16") *dtype = DType::kBF16;
  else if (t.dtype_text == "F16") *dtype = DType::kF16;
  else if (t.ggml && t.dtype_text == "Q8_0") *dtype = DType::kQ8_0;
  else if (t.ggml && t.dtype_text == "Q4_0") *dtype = DType::kQ4_0;
  else if (t.ggml && t.dtype_text == "Q5_0") *dtype = DType::kQ5_0;
  else if (t.ggml && t.dtype_text == "Q4_K") *dtype = DType::kQ4_K;
  else if (t.ggml && t.dtype_text == "Q6_K") *dtype = DType::kQ6_K;
  else
    fail("{}: tensor \"{}\" has dtype {}; the runtime computes with F32, BF16, F16, Q8_0, Q4_0, Q5_0, Q4_K and Q6_K "
         "(import-gguf "
         "converts other GGUF types to a directory of floats)", t.file, name, t.dtype_text);
  const int64_t cols = t.shape.empty() ? 1 : t.shape.back();
  const int64_t rows = cols == 0 ? 0 : t.numel() / cols;
  RAD_CHECK(cols % dtype_block_elems(*dtype) == 0,
            "{}: tensor \"{}\" is {} with rows of {} values, not whole blocks of {}", t.file, name, t.dtype_text, cols,
            dtype_block_elems(*dtype));
  RAD_CHECK(t.bytes == static_cast<uint64_t>(rows) * row_bytes(*dtype, cols),
            "{}: tensor \"{}\" holds {} bytes; {} of shape {} needs {}", t.file, name, t.bytes, t.dtype_text,
            shape_text(t.shape), static_cast<uint64_t>(rows) * row_bytes(*dtype, cols));
  used_.insert(name);
  return t;
}

std::vector<std::string> TensorStore::unused(const std::set<std::string>& ignore) const {
  std::vector<std::string> out;
  for (const auto& [name, t] : tensors_)
    if (used_.count(name) == 0 && ignore.count(name) == 0) out.push_back(name);
  return out;
}

}  // namespace rad::runtime
