#include "rad/io/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

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

constexpr size_t kMaxRank = 16;

bool mul_overflows(uint64_t a, uint64_t b, uint64_t* out) { return __builtin_mul_overflow(a, b, out); }

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

void parse_safetensors_header(const std::string& path, const char* header, size_t header_size,
                              uint64_t data_size, std::vector<SafetensorsEntry>* entries,
                              std::map<std::string, std::string>* metadata) {
  using nlohmann::json;
  entries->clear();
  metadata->clear();
  json root;
  try {
    root = json::parse(header, header + header_size);
  } catch (const json::exception& e) {
    fail("{}: safetensors header is not valid JSON: {}", path, e.what());
  }
  RAD_CHECK(root.is_object(), "{}: safetensors header must be a JSON object", path);
  for (auto it = root.begin(); it != root.end(); ++it) {
    const std::string& name = it.key();
    const json& value = it.value();
    if (name == "__metadata__") {
      RAD_CHECK(value.is_object(), "{}: __metadata__ must be an object of strings", path);
      for (auto m = value.begin(); m != value.end(); ++m) {
        RAD_CHECK(m.value().is_string(), "{}: __metadata__[\"{}\"] must be a string", path, m.key());
        (*metadata)[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    RAD_CHECK(value.is_object(), "{}: tensor \"{}\": entry must be an object", path, name);
    SafetensorsEntry entry;
    entry.name = name;
    auto dtype = value.find("dtype");
    RAD_CHECK(dtype != value.end() && dtype->is_string(), "{}: tensor \"{}\": missing string field \"dtype\"",
              path, name);
    entry.dtype = dtype->get<std::string>();
    size_t elem = safetensors_dtype_size(entry.dtype);
    RAD_CHECK(elem > 0, "{}: tensor \"{}\": unsupported dtype \"{}\"", path, name, entry.dtype);

    auto shape = value.find("shape");
    RAD_CHECK(shape != value.end() && shape->is_array(), "{}: tensor \"{}\": missing array field \"shape\"", path,
              name);
    RAD_CHECK(shape->size() <= kMaxRank, "{}: tensor \"{}\": rank {} exceeds the maximum {}", path, name,
              shape->size(), kMaxRank);
    uint64_t numel = 1;
    for (const auto& dim : *shape) {
      RAD_CHECK(dim.is_number_unsigned() || (dim.is_number_integer() && dim.get<int64_t>() >= 0),
                "{}: tensor \"{}\": shape entries must be non-negative integers, got {}", path, name, dim.dump());
      uint64_t d = dim.get<uint64_t>();
      RAD_CHECK(d <= static_cast<uint64_t>(INT64_MAX), "{}: tensor \"{}\": dimension {} too large", path, name, d);
      RAD_CHECK(!mul_overflows(numel, d, &numel), "{}: tensor \"{}\": shape {} overflows", path, name,
                shape->dump());
      entry.shape.push_back(static_cast<int64_t>(d));
    }
    uint64_t nbytes = 0;
    RAD_CHECK(!mul_overflows(numel, elem, &nbytes), "{}: tensor \"{}\": byte size overflows", path, name);

    auto offsets = value.find("data_offsets");
    RAD_CHECK(offsets != value.end() && offsets->is_array() && offsets->size() == 2,
              "{}: tensor \"{}\": \"data_offsets\" must be an array [begin, end]", path, name);
    for (const auto& o : *offsets)
      RAD_CHECK(o.is_number_unsigned() || (o.is_number_integer() && o.get<int64_t>() >= 0),
                "{}: tensor \"{}\": data_offsets must be non-negative integers, got {}", path, name, offsets->dump());
    entry.begin = (*offsets)[0].get<uint64_t>();
    entry.end = (*offsets)[1].get<uint64_t>();
    RAD_CHECK(entry.begin <= entry.end, "{}: tensor \"{}\": data_offsets [{}, {}] are reversed", path, name,
              entry.begin, entry.end);
    RAD_CHECK(entry.end <= data_size,
              "{}: tensor \"{}\": data_offsets [{}, {}] extend past the data buffer ({} bytes); file truncated?", path,
              name, entry.begin, entry.end, data_size);
    RAD_CHECK(entry.end - entry.begin == nbytes,
              "{}: tensor \"{}\": {} bytes in data_offsets but dtype {} x shape {} needs {} bytes", path, name,
              entry.end - entry.begin, entry.dtype, shape->dump(), nbytes);
    for (const auto& [key, unused] : value.items())
      RAD_CHECK(key == "dtype" || key == "shape" || key == "data_offsets", "{}: tensor \"{}\": unknown field \"{}\"",
                path, name, key);
    entries->push_back(std::move(entry));
  }
  // Ranges must not overlap (empty tensors take no bytes and cannot overlap).
  std::vector<const SafetensorsEntry*> sorted;
  for (const auto& e : *entries)
    if (e.end > e.begin) sorted.push_back(&e);
  std::sort(sorted.begin(), sorted.end(), [](const auto* a, const auto* b) { return a->begin < b->begin; });
  for (size_t i = 1; i < sorted.size(); ++i)
    RAD_CHECK(sorted[i]->begin >= sorted[i - 1]->end, "{}: tensors \"{}\" and \"{}\" overlap in the data buffer",
              path, sorted[i - 1]->name, sorted[i]->name);
}

std::shared_ptr<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  std::shared_ptr<SafetensorsFile> file(new SafetensorsFile());
  file->path_ = path;
  file->self_ = file;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail("cannot open {}: {}", path, std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    fail("cannot stat {}: {}", path, std::strerror(err));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    fail("{}: not a regular file", path);
  }
  uint64_t file_size = static_cast<uint64_t>(st.st_size);
  if (file_size < 8) {
    ::close(fd);
    fail("{}: file is {} bytes, too small for a safetensors header (8-byte length + JSON)", path, file_size);
  }
  // Copy-on-write private mapping: a tensor written to by mistake never alters the file.
  void* map = ::mmap(nullptr, file_size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
  int err = errno;
  ::close(fd);
  if (map == MAP_FAILED) fail("cannot memory-map {}: {}", path, std::strerror(err));
  file->map_ = map;
  file->map_size_ = file_size;
  const uint8_t* bytes = static_cast<const uint8_t*>(map);
  uint64_t header_size = 0;
  for (int i = 7; i >= 0; --i) header_size = (header_size << 8) | bytes[i];  // little-endian
  RAD_CHECK(header_size <= kMaxSafetensorsHeaderBytes,
            "{}: header length {} exceeds the limit of {} bytes; not a safetensors file?", path, header_size,
            kMaxSafetensorsHeaderBytes);
  RAD_CHECK(header_size <= file_size - 8, "{}: header length {} exceeds the file size {}; file truncated?", path,
            header_size, file_size);
  RAD_CHECK(header_size >= 2, "{}: header length {} is too small for a JSON object", path, header_size);
  file->data_ = bytes + 8 + header_size;
  file->data_size_ = file_size - 8 - header_size;
  parse_safetensors_header(path, reinterpret_cast<const char*>(bytes + 8), header_size, file->data_size_,
                           &file->entries_, &file->metadata_);
  for (size_t i = 0; i < file->entries_.size(); ++i) file->index_[file->entries_[i].name] = i;
  return file;
}

SafetensorsFile::~SafetensorsFile() {
  if (map_ != nullptr) ::munmap(map_, map_size_);
}

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
