#include "rad/io/safetensors.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>

#include "rad/core/atomic_file.h"
#include "rad/core/error.h"

namespace rad::io {
namespace {

struct DTypeInfo {
  const char* name;
  at::ScalarType type;
  size_t size;
};

constexpr DTypeInfo kDTypes[] = {
    {"F64", at::kDouble, 8}, {"F32", at::kFloat, 4},  {"F16", at::kHalf, 2},  {"BF16", at::kBFloat16, 2},
    {"I64", at::kLong, 8},   {"I32", at::kInt, 4},    {"I16", at::kShort, 2}, {"I8", at::kChar, 1},
    {"U8", at::kByte, 1},    {"BOOL", at::kBool, 1},
};

}  // namespace

size_t safetensors_dtype_size(const std::string& dtype) {
  for (const auto& d : kDTypes)
    if (dtype == d.name) return d.size;
  return 0;
}

at::ScalarType safetensors_dtype_to_scalar(const std::string& dtype, const std::string& context) {
  for (const auto& d : kDTypes)
    if (dtype == d.name) return d.type;
  fail("{}: unsupported dtype \"{}\" (supported: F64, F32, F16, BF16, I64, I32, I16, I8, U8, BOOL)", context,
       dtype);
}

std::string scalar_to_safetensors_dtype(at::ScalarType type) {
  for (const auto& d : kDTypes)
    if (type == d.type) return d.name;
  fail("cannot write tensors of type {} to safetensors", c10::toString(type));
}

std::shared_ptr<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  std::shared_ptr<SafetensorsFile> file(new SafetensorsFile());
  file->path_ = path;
  file->self_ = file;
  // Copy-on-write private mapping: a tensor written to by mistake never alters the file.
  file->map_ = MappedFile::open(path, /*writable=*/true);
  SafetensorsLayout layout = parse_safetensors(path, file->map_->data(), file->map_->size());
  for (const auto& e : layout.entries)
    RAD_CHECK(safetensors_dtype_size(e.dtype) > 0, "{}: tensor \"{}\": unsupported dtype \"{}\"", path, e.name,
              e.dtype);
  file->data_ = file->map_->data() + layout.data_offset;
  file->data_size_ = layout.data_size;
  file->entries_ = std::move(layout.entries);
  file->metadata_ = std::move(layout.metadata);
  for (size_t i = 0; i < file->entries_.size(); ++i) file->index_[file->entries_[i].name] = i;
  return file;
}

SafetensorsFile::~SafetensorsFile() = default;

const SafetensorsEntry& SafetensorsFile::entry(const std::string& name) const {
  auto it = index_.find(name);
  RAD_CHECK(it != index_.end(), "{}: no tensor named \"{}\"", path_, name);
  return entries_[it->second];
}

at::Tensor SafetensorsFile::tensor(const std::string& name) const {
  const SafetensorsEntry& e = entry(name);
  at::ScalarType type = safetensors_dtype_to_scalar(e.dtype, path_ + ": tensor \"" + name + "\"");
  auto options = at::TensorOptions().dtype(type).device(at::kCPU);
  const uint8_t* ptr = data_ + e.begin;
  size_t elem = safetensors_dtype_size(e.dtype);
  if (e.end == e.begin) return at::empty(e.shape, options);
  if (reinterpret_cast<uintptr_t>(ptr) % elem != 0) {
    at::Tensor copy = at::empty(e.shape, options);
    std::memcpy(copy.data_ptr(), ptr, e.end - e.begin);
    return copy;
  }
  std::shared_ptr<const SafetensorsFile> keep_alive = self_.lock();
  return at::from_blob(
      const_cast<uint8_t*>(ptr), e.shape, [keep_alive](void*) mutable { keep_alive.reset(); }, options);
}

void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, at::Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  using nlohmann::json;
  std::vector<std::pair<std::string, at::Tensor>> sorted;
  for (const auto& [name, t] : tensors) {
    RAD_CHECK(name != "__metadata__", "cannot save a tensor named __metadata__");
    sorted.emplace_back(name, t.detach().to(at::kCPU).contiguous());
  }
  std::sort(sorted.begin(), sorted.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  for (size_t i = 1; i < sorted.size(); ++i)
    RAD_CHECK(sorted[i].first != sorted[i - 1].first, "{}: duplicate tensor name \"{}\"", path, sorted[i].first);
  json header = json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const auto& [name, t] : sorted) {
    uint64_t nbytes = t.numel() * t.element_size();
    header[name] = {{"dtype", scalar_to_safetensors_dtype(t.scalar_type())},
                    {"shape", t.sizes().vec()},
                    {"data_offsets", {offset, offset + nbytes}}};
    offset += nbytes;
  }
  std::string text = header.dump();
  while (text.size() % 8 != 0) text.push_back(' ');
  uint8_t length[8];
  uint64_t n = text.size();
  for (int i = 0; i < 8; ++i) length[i] = static_cast<uint8_t>(n >> (8 * i));
  write_file_atomic(path, [&](int fd) {
    write_all(fd, length, 8, path);
    write_all(fd, text.data(), text.size(), path);
    for (const auto& [name, t] : sorted) write_all(fd, t.data_ptr(), t.numel() * t.element_size(), path);
  });
}

}  // namespace rad::io
