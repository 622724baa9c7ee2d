#include "rad/runtime/tensor_store.h"

#include <filesystem>

#include "rad/core/error.h"
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
  }
  return "?";
}

size_t dtype_size(DType t) { return t == DType::kF32 ? 4 : 2; }

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
  uint64_t n = 0;
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

const TensorView& TensorStore::get(const std::string& name, const std::vector<int64_t>& shape, DType* dtype) {
  auto it = tensors_.find(name);
  RAD_CHECK(it != tensors_.end(), "{}: tensor \"{}\" is missing (expected shape {})", where_, name, shape_text(shape));
  const TensorView& t = it->second;
  RAD_CHECK(t.shape == shape, "{}: tensor \"{}\" has shape {}, expected {}", t.file, name, shape_text(t.shape),
            shape_text(shape));
  if (t.dtype_text == "F32") *dtype = DType::kF32;
  else if (t.dtype_text == "BF16") *dtype = DType::kBF16;
  else if (t.dtype_text == "F16") *dtype = DType::kF16;
  else fail("{}: tensor \"{}\" has dtype {}; the runtime supports F32, BF16 and F16", t.file, name, t.dtype_text);
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
