#include "rad/runtime/tensor_store.h"

#include "rad/io/shard_index.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "rad/core/atomic_file.h"
#include "rad/core/error.h"

namespace rad::runtime {
namespace fs = std::filesystem;
using nlohmann::json;

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
// Element sizes of every safetensors dtype, so that tensors the runtime does not use can still be
// validated; 0 for unknown names.
size_t any_dtype_size(const std::string& d) {
  if (d == "F64" || d == "I64" || d == "U64") return 8;
  if (d == "F32" || d == "I32" || d == "U32") return 4;
  if (d == "F16" || d == "BF16" || d == "I16" || d == "U16") return 2;
  if (d == "I8" || d == "U8" || d == "BOOL" || d == "F8_E4M3" || d == "F8_E5M2") return 1;
  return 0;
}

bool mul_overflows(uint64_t a, uint64_t b, uint64_t* out) { return __builtin_mul_overflow(a, b, out); }

std::string shape_text(const std::vector<int64_t>& s) {
  std::string t = "[";
  for (size_t i = 0; i < s.size(); ++i) t += (i ? ", " : "") + std::to_string(s[i]);
  return t + "]";
}
}  // namespace

class MappedFile {
 public:
  explicit MappedFile(const std::string& path) : path_(path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) fail("cannot open {}: {}", path, std::strerror(errno));
    struct stat st {};
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
      ::close(fd);
      fail("{}: not a readable regular file", path);
    }
    size_ = static_cast<size_t>(st.st_size);
    if (size_ < 8) {
      ::close(fd);
      fail("{}: file is {} bytes, too small for a safetensors header; truncated?", path, size_);
    }
    void* map = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    int err = errno;
    ::close(fd);
    if (map == MAP_FAILED) fail("cannot memory-map {}: {}", path, std::strerror(err));
    map_ = static_cast<const uint8_t*>(map);
  }
  ~MappedFile() { ::munmap(const_cast<uint8_t*>(map_), size_); }
  const uint8_t* data() const { return map_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  const uint8_t* map_ = nullptr;
  size_t size_ = 0;
};

TensorStore::~TensorStore() = default;

uint64_t TensorStore::mapped_bytes() const {
  uint64_t n = 0;
  for (const auto& f : files_) n += f->size();
  return n;
}

void TensorStore::add_file(const std::string& path, const std::set<std::string>* only) {
  files_.push_back(std::make_unique<MappedFile>(path));
  const MappedFile& f = *files_.back();
  const uint8_t* bytes = f.data();
  uint64_t header_size = 0;
  for (int i = 7; i >= 0; --i) header_size = (header_size << 8) | bytes[i];  // little-endian
  RAD_CHECK(header_size >= 2 && header_size <= f.size() - 8,
            "{}: header length {} does not fit the file size {}; truncated or not a safetensors file", path,
            header_size, f.size());
  const uint8_t* data = bytes + 8 + header_size;
  const uint64_t data_size = f.size() - 8 - header_size;
  json header;
  try {
    header = json::parse(reinterpret_cast<const char*>(bytes + 8), reinterpret_cast<const char*>(data));
  } catch (const json::exception& e) {
    fail("{}: header is not valid JSON: {}", path, e.what());
  }
  RAD_CHECK(header.is_object(), "{}: header must be a JSON object", path);
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    if (name == "__metadata__") continue;
    if (only != nullptr && only->count(name) == 0) continue;
    const json& v = it.value();
    RAD_CHECK(v.is_object() && v.contains("dtype") && v["dtype"].is_string() && v.contains("shape") &&
                  v["shape"].is_array() && v.contains("data_offsets") && v["data_offsets"].is_array() &&
                  v["data_offsets"].size() == 2,
              "{}: tensor \"{}\": entry needs \"dtype\" (string), \"shape\" (array) and \"data_offsets\" [begin, end]",
              path, name);
    TensorView t;
    t.name = name;
    t.file = path;
    t.dtype_text = v["dtype"].get<std::string>();
    size_t elem = any_dtype_size(t.dtype_text);
    RAD_CHECK(elem > 0, "{}: tensor \"{}\": unknown dtype \"{}\"", path, name, t.dtype_text);
    uint64_t numel = 1;
    for (const auto& d : v["shape"]) {
      RAD_CHECK(d.is_number_integer() && d.get<int64_t>() >= 0, "{}: tensor \"{}\": bad shape {}", path, name,
                v["shape"].dump());
      RAD_CHECK(!mul_overflows(numel, d.get<uint64_t>(), &numel), "{}: tensor \"{}\": shape overflows", path, name);
      t.shape.push_back(d.get<int64_t>());
    }
    uint64_t nbytes = 0;
    RAD_CHECK(!mul_overflows(numel, elem, &nbytes), "{}: tensor \"{}\": byte size overflows", path, name);
    const json& off = v["data_offsets"];
    RAD_CHECK(off[0].is_number_integer() && off[1].is_number_integer() && off[0].get<int64_t>() >= 0 &&
                  off[1].get<int64_t>() >= 0,
              "{}: tensor \"{}\": data_offsets must be non-negative integers", path, name);
    uint64_t begin = off[0].get<uint64_t>(), end = off[1].get<uint64_t>();
    RAD_CHECK(begin <= end && end <= data_size,
              "{}: tensor \"{}\": data_offsets [{}, {}] extend past the data buffer ({} bytes); file truncated?", path,
              name, begin, end, data_size);
    RAD_CHECK(end - begin == nbytes, "{}: tensor \"{}\": {} bytes in data_offsets but dtype {} x shape {} needs {}",
              path, name, end - begin, t.dtype_text, shape_text(t.shape), nbytes);
    RAD_CHECK(tensors_.count(name) == 0, "{}: tensor \"{}\" appears in more than one file", path, name);
    t.data = data + begin;
    t.bytes = nbytes;
    tensors_[name] = std::move(t);
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
