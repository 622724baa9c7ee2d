#include "rad/io/gguf.h"

#include <cctype>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>

#include "rad/core/atomic_file.h"
#include "rad/core/error.h"

namespace rad::io {

namespace {

// Element sizes of the fixed-size metadata types (0: string / array).
size_t scalar_size(GgufType t) {
  switch (t) {
    case GgufType::kUint8:
    case GgufType::kInt8:
    case GgufType::kBool:
      return 1;
    case GgufType::kUint16:
    case GgufType::kInt16:
      return 2;
    case GgufType::kUint32:
    case GgufType::kInt32:
    case GgufType::kFloat32:
      return 4;
    case GgufType::kUint64:
    case GgufType::kInt64:
    case GgufType::kFloat64:
      return 8;
    default:
      return 0;
  }
}

bool known_value_type(uint32_t t) { return t <= static_cast<uint32_t>(GgufType::kFloat64); }

// Nested arrays are legal but no real file nests deeply; the bound keeps recursion finite.
constexpr int kMaxArrayDepth = 4;

// Bounds-checked little-endian reader over the mapped bytes.
class Cursor {
 public:
  Cursor(const std::string& path, const uint8_t* p, size_t size) : path_(path), p_(p), size_(size) {}
  size_t pos() const { return pos_; }
  size_t remaining() const { return size_ - pos_; }

  void need(uint64_t n, const std::string& what) const {
    if (n > remaining())
      fail("{}: truncated GGUF: {} needs {} bytes at offset {}, only {} left", path_, what, n, pos_, remaining());
  }
  template <typename T>
  T read(const std::string& what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, p_ + pos_, sizeof(T));  // the format is little-endian, as is every machine we build for
    pos_ += sizeof(T);
    return v;
  }
  std::string read_string(const std::string& what) {
    uint64_t n = read<uint64_t>(what + " (string length)");
    need(n, what);  // before allocating: a huge length in a small file is an error, not an allocation
    std::string s(reinterpret_cast<const char*>(p_ + pos_), n);
    pos_ += n;
    return s;
  }

 private:
  const std::string& path_;
  const uint8_t* p_;
  size_t size_;
  size_t pos_ = 0;
};

// Reads `count` elements of type `t` into `out` (scalars when count == 1 and not an array).
void read_elements(Cursor& c, const std::string& path, const std::string& key, GgufType t, uint64_t count,
                   GgufValue& out, int depth) {
  size_t es = scalar_size(t);
  // Every element takes at least 1 byte (strings 8, arrays 12): refuse counts the file cannot hold
  // before reserving memory for them.
  uint64_t min_bytes = es > 0 ? es : (t == GgufType::kString ? 8 : 12);
  if (count > c.remaining() / min_bytes)
    fail("{}: metadata \"{}\": {} elements of type {} cannot fit in the {} bytes left", path, key, count,
         gguf_type_name(t), c.remaining());
  switch (t) {
    case GgufType::kUint8:
    case GgufType::kUint16:
    case GgufType::kUint32:
    case GgufType::kUint64:
      out.uints.reserve(count);
      for (uint64_t i = 0; i < count; ++i) {
        uint64_t v = es == 1 ? c.read<uint8_t>(key) : es == 2 ? c.read<uint16_t>(key) : es == 4 ? c.read<uint32_t>(key) : c.read<uint64_t>(key);
        out.uints.push_back(v);
      }
      break;
    case GgufType::kInt8:
    case GgufType::kInt16:
    case GgufType::kInt32:
    case GgufType::kInt64:
      out.ints.reserve(count);
      for (uint64_t i = 0; i < count; ++i) {
        int64_t v = es == 1 ? c.read<int8_t>(key) : es == 2 ? c.read<int16_t>(key) : es == 4 ? c.read<int32_t>(key) : c.read<int64_t>(key);
        out.ints.push_back(v);
      }
      break;
    case GgufType::kBool:
      out.ints.reserve(count);
      for (uint64_t i = 0; i < count; ++i) {
        uint8_t v = c.read<uint8_t>(key);
        RAD_CHECK(v <= 1, "{}: metadata \"{}\": bool value must be 0 or 1, got {}", path, key, v);
        out.ints.push_back(v);
      }
      break;
    case GgufType::kFloat32:
    case GgufType::kFloat64:
      out.floats.reserve(count);
      for (uint64_t i = 0; i < count; ++i) out.floats.push_back(es == 4 ? c.read<float>(key) : c.read<double>(key));
      break;
    case GgufType::kString:
      out.strings.reserve(count);
      for (uint64_t i = 0; i < count; ++i) out.strings.push_back(c.read_string("metadata \"" + key + "\""));
      break;
    case GgufType::kArray:
      RAD_CHECK(depth < kMaxArrayDepth, "{}: metadata \"{}\": arrays nested deeper than {}", path, key, kMaxArrayDepth);
      out.arrays.reserve(count);
      for (uint64_t i = 0; i < count; ++i) {
        GgufValue inner;
        inner.type = GgufType::kArray;
        uint32_t et = c.read<uint32_t>(key);
        RAD_CHECK(known_value_type(et), "{}: metadata \"{}\": unknown array element type {}", path, key, et);
        inner.array_type = static_cast<GgufType>(et);
        uint64_t n = c.read<uint64_t>(key);
        read_elements(c, path, key, inner.array_type, n, inner, depth + 1);
        out.arrays.push_back(std::move(inner));
      }
      break;
  }
}

bool is_power_of_two(uint64_t v) { return v != 0 && (v & (v - 1)) == 0; }

uint64_t align_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

const GgmlTypeInfo* info_table(uint32_t type) {
  static const GgmlTypeInfo f32{"F32", 1, 4}, f16{"F16", 1, 2}, q4_0{"Q4_0", 32, 18}, q4_1{"Q4_1", 32, 20},
      q5_0{"Q5_0", 32, 22}, q5_1{"Q5_1", 32, 24}, q8_0{"Q8_0", 32, 34}, q8_1{"Q8_1", 32, 36},
      q2_k{"Q2_K", 256, 84}, q3_k{"Q3_K", 256, 110}, q4_k{"Q4_K", 256, 144}, q5_k{"Q5_K", 256, 176},
      q6_k{"Q6_K", 256, 210}, q8_k{"Q8_K", 256, 292}, i8{"I8", 1, 1}, i16{"I16", 1, 2}, i32{"I32", 1, 4},
      i64{"I64", 1, 8}, f64{"F64", 1, 8}, bf16{"BF16", 1, 2};
  switch (type) {
    case 0: return &f32;
    case 1: return &f16;
    case 2: return &q4_0;
    case 3: return &q4_1;
    case 6: return &q5_0;
    case 7: return &q5_1;
    case 8: return &q8_0;
    case 9: return &q8_1;
    case 10: return &q2_k;
    case 11: return &q3_k;
    case 12: return &q4_k;
    case 13: return &q5_k;
    case 14: return &q6_k;
    case 15: return &q8_k;
    case 24: return &i8;
    case 25: return &i16;
    case 26: return &i32;
    case 27: return &i64;
    case 28: return &f64;
    case 30: return &bf16;
    default: return nullptr;
  }
}

std::string describe(const GgufValue& v) {
  if (v.is_array()) return fmt::format("array of {} {}", v.size(), gguf_type_name(v.array_type));
  return gguf_type_name(v.type);
}

}  // namespace

const char* gguf_type_name(GgufType type) {
  switch (type) {
    case GgufType::kUint8: return "uint8";
    case GgufType::kInt8: return "int8";
    case GgufType::kUint16: return "uint16";
    case GgufType::kInt16: return "int16";
    case GgufType::kUint32: return "uint32";
    case GgufType::kInt32: return "int32";
    case GgufType::kFloat32: return "float32";
    case GgufType::kBool: return "bool";
    case GgufType::kString: return "string";
    case GgufType::kArray: return "array";
    case GgufType::kUint64: return "uint64";
    case GgufType::kInt64: return "int64";
    case GgufType::kFloat64: return "float64";
  }
  return "unknown";
}

GgufValue GgufValue::u32(uint32_t v) {
  GgufValue x;
  x.type = GgufType::kUint32;
  x.uints = {v};
  return x;
}
GgufValue GgufValue::u64(uint64_t v) {
  GgufValue x;
  x.type = GgufType::kUint64;
  x.uints = {v};
  return x;
}
GgufValue GgufValue::i32(int32_t v) {
  GgufValue x;
  x.type = GgufType::kInt32;
  x.ints = {v};
  return x;
}
GgufValue GgufValue::f32(float v) {
  GgufValue x;
  x.type = GgufType::kFloat32;
  x.floats = {v};
  return x;
}
GgufValue GgufValue::boolean(bool v) {
  GgufValue x;
  x.type = GgufType::kBool;
  x.ints = {v ? 1 : 0};
  return x;
}
GgufValue GgufValue::string(std::string v) {
  GgufValue x;
  x.type = GgufType::kString;
  x.strings = {std::move(v)};
  return x;
}
GgufValue GgufValue::string_array(std::vector<std::string> v) {
  GgufValue x;
  x.type = GgufType::kArray;
  x.array_type = GgufType::kString;
  x.strings = std::move(v);
  return x;
}
GgufValue GgufValue::i32_array(const std::vector<int32_t>& v) {
  GgufValue x;
  x.type = GgufType::kArray;
  x.array_type = GgufType::kInt32;
  x.ints.assign(v.begin(), v.end());
  return x;
}

size_t GgufValue::size() const {
  if (!is_array()) return 1;
  return uints.size() + ints.size() + floats.size() + strings.size() + arrays.size();
}

const GgmlTypeInfo* ggml_type_info(uint32_t type) { return info_table(type); }

std::optional<GgmlType> ggml_type_from_name(const std::string& name) {
  std::string upper = name;
  for (char& ch : upper) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  for (uint32_t t = 0; t <= 30; ++t)
    if (const GgmlTypeInfo* info = info_table(t); info != nullptr && upper == info->name) return static_cast<GgmlType>(t);
  return std::nullopt;
}

std::string ggml_type_name(uint32_t type) {
  const GgmlTypeInfo* info = info_table(type);
  return info ? info->name : fmt::format("type {}", type);
}

std::vector<int64_t> GgufTensorInfo::shape() const {
  std::vector<int64_t> s(dims.rbegin(), dims.rend());
  return s;
}

// ---------------------------------------------------------------------------------------------------
// Reader

std::shared_ptr<GgufFile> GgufFile::open(const std::string& path) {
  std::unique_ptr<MappedFile> map = MappedFile::open(path);
  if (map->size() < 24) fail("{}: not a GGUF file: {} bytes, the header alone needs 24", path, map->size());
  std::shared_ptr<GgufFile> f(new GgufFile());
  f->path_ = path;
  f->bytes_ = map->data();
  f->size_ = map->size();
  f->map_ = std::move(map);
  f->parse_all();
  return f;
}

std::shared_ptr<GgufFile> GgufFile::parse(const std::string& path, const uint8_t* bytes, size_t size) {
  std::shared_ptr<GgufFile> f(new GgufFile());
  f->path_ = path;
  f->bytes_ = bytes;
  f->size_ = size;
  f->parse_all();
  return f;
}

GgufFile::~GgufFile() = default;

void GgufFile::parse_all() {
  const std::string& path = path_;
  Cursor c(path, bytes_, size_);
  c.need(4, "magic");
  if (std::memcmp(bytes_, "GGUF", 4) != 0)
    fail("{}: not a GGUF file: magic is {:02x} {:02x} {:02x} {:02x}, expected \"GGUF\"", path,
         size_ > 0 ? bytes_[0] : 0, size_ > 1 ? bytes_[1] : 0, size_ > 2 ? bytes_[2] : 0, size_ > 3 ? bytes_[3] : 0);
  c.read<uint32_t>("magic");
  version_ = c.read<uint32_t>("version");
  // A big-endian file reads as a version with its bytes swapped (e.g. 0x03000000).
  RAD_CHECK(version_ < 0x10000 || (version_ & 0xffff) != 0,
            "{}: GGUF version field {:#x}: big-endian GGUF files are not supported", path, version_);
  RAD_CHECK(version_ != 1, "{}: GGUF version 1 (32-bit counts) is not supported; re-convert it with a current llama.cpp",
            path);
  RAD_CHECK(version_ == 2 || version_ == 3, "{}: unsupported GGUF version {} (supported: 2, 3)", path, version_);
  uint64_t n_tensors = c.read<uint64_t>("tensor count");
  uint64_t n_kv = c.read<uint64_t>("metadata count");
  // Each key/value takes >= 13 bytes (8 length + 1 key byte + 4 type), each tensor info >= 24
  // (8 + 1 name + 4 n_dims + 4 type + 8 offset, minus the dims): refuse counts the file cannot hold.
  RAD_CHECK(n_kv <= c.remaining() / 13, "{}: metadata count {} cannot fit in a {}-byte file", path, n_kv, size_);
  RAD_CHECK(n_tensors <= c.remaining() / 24, "{}: tensor count {} cannot fit in a {}-byte file", path, n_tensors,
            size_);

  keys_.reserve(n_kv);
  for (uint64_t i = 0; i < n_kv; ++i) {
    std::string key = c.read_string(fmt::format("metadata key #{}", i));
    RAD_CHECK(!key.empty(), "{}: metadata key #{} is empty", path, i);
    RAD_CHECK(metadata_.count(key) == 0, "{}: metadata key \"{}\" appears twice", path, key);
    uint32_t t = c.read<uint32_t>("metadata \"" + key + "\" type");
    RAD_CHECK(known_value_type(t), "{}: metadata \"{}\" has unknown value type {}", path, key, t);
    GgufValue v;
    v.type = static_cast<GgufType>(t);
    if (v.type == GgufType::kArray) {
      uint32_t et = c.read<uint32_t>("metadata \"" + key + "\" element type");
      RAD_CHECK(known_value_type(et), "{}: metadata \"{}\": unknown array element type {}", path, key, et);
      v.array_type = static_cast<GgufType>(et);
      uint64_t n = c.read<uint64_t>("metadata \"" + key + "\" element count");
      read_elements(c, path, key, v.array_type, n, v, 1);
    } else {
      read_elements(c, path, key, v.type, 1, v, 0);
    }
    keys_.push_back(key);
    metadata_.emplace(key, std::move(v));
  }

  if (const GgufValue* a = find("general.alignment")) {
    RAD_CHECK(!a->is_array() && a->type == GgufType::kUint32, "{}: metadata \"general.alignment\" must be uint32, got {}",
              path, describe(*a));
    RAD_CHECK(is_power_of_two(a->uints[0]), "{}: metadata \"general.alignment\" must be a power of two, got {}", path,
              a->uints[0]);
    alignment_ = static_cast<uint32_t>(a->uints[0]);
  }

  tensors_.reserve(n_tensors);
  for (uint64_t i = 0; i < n_tensors; ++i) {
    GgufTensorInfo t;
    t.name = c.read_string(fmt::format("tensor #{} name", i));
    RAD_CHECK(!t.name.empty(), "{}: tensor #{} has an empty name", path, i);
    RAD_CHECK(tensor_index_.count(t.name) == 0, "{}: tensor \"{}\" appears twice", path, t.name);
    const std::string what = "tensor \"" + t.name + "\"";
    uint32_t n_dims = c.read<uint32_t>(what + " n_dims");
    RAD_CHECK(n_dims >= 1 && n_dims <= kGgufMaxDims, "{}: {}: n_dims must be 1..{}, got {}", path, what, kGgufMaxDims,
              n_dims);
    t.n_elems = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      uint64_t dim = c.read<uint64_t>(what + " dims");
      RAD_CHECK(dim <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()), "{}: {}: dimension {} is {}, too large",
                path, what, d, dim);
      // Overflow check before multiplying (a dimension of 0 makes an empty tensor).
      RAD_CHECK(dim == 0 || t.n_elems <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) / dim,
                "{}: {}: element count overflows", path, what);
      t.n_elems *= dim;
      t.dims.push_back(dim);
    }
    uint32_t type = c.read<uint32_t>(what + " type");
    const GgmlTypeInfo* ti = info_table(type);
    RAD_CHECK(ti != nullptr, "{}: {}: unknown or unsupported ggml type {}", path, what, type);
    t.type = static_cast<GgmlType>(type);
    RAD_CHECK(t.dims[0] % ti->block_elems == 0, "{}: {}: row length {} is not a multiple of the {} block size {}", path,
              what, t.dims[0], ti->name, ti->block_elems);
    uint64_t blocks = t.n_elems / ti->block_elems;
    RAD_CHECK(blocks <= std::numeric_limits<uint64_t>::max() / ti->block_bytes, "{}: {}: byte size overflows", path, what);
    t.n_bytes = blocks * ti->block_bytes;
    t.offset = c.read<uint64_t>(what + " offset");
    RAD_CHECK(t.offset % alignment_ == 0, "{}: {}: offset {} is not a multiple of the alignment {}", path, what,
              t.offset, alignment_);
    tensor_index_[t.name] = tensors_.size();
    tensors_.push_back(std::move(t));
  }

  uint64_t data_start = align_up(c.pos(), alignment_);
  // A file without tensors may end right after its metadata, before the padding.
  RAD_CHECK(data_start <= size_ || tensors_.empty(), "{}: the data section would start at {}, past the end of the {}-byte file",
            path, data_start, size_);
  data_start = std::min<uint64_t>(data_start, size_);
  data_ = bytes_ + data_start;
  data_size_ = size_ - data_start;

  // Every tensor inside the data section, and no two overlapping.
  std::vector<const GgufTensorInfo*> by_offset;
  for (const auto& t : tensors_) {
    RAD_CHECK(t.offset <= data_size_ && t.n_bytes <= data_size_ - t.offset,
              "{}: tensor \"{}\" ({} bytes at offset {}) runs past the end of the data section ({} bytes)", path, t.name,
              t.n_bytes, t.offset, data_size_);
    by_offset.push_back(&t);
  }
  std::sort(by_offset.begin(), by_offset.end(),
            [](const GgufTensorInfo* a, const GgufTensorInfo* b) { return a->offset < b->offset; });
  for (size_t i = 1; i < by_offset.size(); ++i) {
    const GgufTensorInfo* a = by_offset[i - 1];
    const GgufTensorInfo* b = by_offset[i];
    RAD_CHECK(a->n_bytes == 0 || a->offset + a->n_bytes <= b->offset, "{}: tensors \"{}\" and \"{}\" overlap", path,
              a->name, b->name);
  }
}

const GgufValue* GgufFile::find(const std::string& key) const {
  auto it = metadata_.find(key);
  return it == metadata_.end() ? nullptr : &it->second;
}

namespace {
const GgufValue& require(const GgufFile& f, const std::string& key) {
  const GgufValue* v = f.find(key);
  RAD_CHECK(v != nullptr, "{}: missing metadata \"{}\"", f.path(), key);
  return *v;
}
}  // namespace

uint64_t GgufFile::get_uint(const std::string& key) const {
  const GgufValue& v = require(*this, key);
  if (!v.is_array() && !v.uints.empty()) return v.uints[0];
  if (!v.is_array() && v.type != GgufType::kBool && !v.ints.empty()) {
    RAD_CHECK(v.ints[0] >= 0, "{}: metadata \"{}\" must not be negative, got {}", path_, key, v.ints[0]);
    return static_cast<uint64_t>(v.ints[0]);
  }
  fail("{}: metadata \"{}\" must be an unsigned integer, got {}", path_, key, describe(v));
}

int64_t GgufFile::get_int(const std::string& key) const {
  const GgufValue& v = require(*this, key);
  if (!v.is_array() && v.type != GgufType::kBool && !v.ints.empty()) return v.ints[0];
  if (!v.is_array() && !v.uints.empty()) {
    RAD_CHECK(v.uints[0] <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()),
              "{}: metadata \"{}\" is out of range: {}", path_, key, v.uints[0]);
    return static_cast<int64_t>(v.uints[0]);
  }
  fail("{}: metadata \"{}\" must be an integer, got {}", path_, key, describe(v));
}

double GgufFile::get_float(const std::string& key) const {
  const GgufValue& v = require(*this, key);
  if (!v.is_array() && !v.floats.empty()) return v.floats[0];
  if (!v.is_array() && !v.uints.empty()) return static_cast<double>(v.uints[0]);
  if (!v.is_array() && v.type != GgufType::kBool && !v.ints.empty()) return static_cast<double>(v.ints[0]);
  fail("{}: metadata \"{}\" must be a number, got {}", path_, key, describe(v));
}

bool GgufFile::get_bool(const std::string& key) const {
  const GgufValue& v = require(*this, key);
  RAD_CHECK(!v.is_array() && v.type == GgufType::kBool, "{}: metadata \"{}\" must be a bool, got {}", path_, key,
            describe(v));
  return v.ints[0] != 0;
}

const std::string& GgufFile::get_string(const std::string& key) const {
  const GgufValue& v = require(*this, key);
  RAD_CHECK(!v.is_array() && v.type == GgufType::kString, "{}: metadata \"{}\" must be a string, got {}", path_, key,
            describe(v));
  return v.strings[0];
}

const std::vector<std::string>& GgufFile::get_string_array(const std::string& key) const {
  const GgufValue& v = require(*this, key);
  RAD_CHECK(v.is_array() && v.array_type == GgufType::kString, "{}: metadata \"{}\" must be an array of strings, got {}",
            path_, key, describe(v));
  return v.strings;
}

std::vector<int64_t> GgufFile::get_int_array(const std::string& key) const {
  const GgufValue& v = require(*this, key);
  RAD_CHECK(v.is_array() && v.array_type != GgufType::kString && v.array_type != GgufType::kArray &&
                v.array_type != GgufType::kFloat32 && v.array_type != GgufType::kFloat64,
            "{}: metadata \"{}\" must be an array of integers, got {}", path_, key, describe(v));
  if (!v.uints.empty()) {
    std::vector<int64_t> out;
    out.reserve(v.uints.size());
    for (uint64_t u : v.uints) {
      RAD_CHECK(u <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()), "{}: metadata \"{}\": value {} out of range",
                path_, key, u);
      out.push_back(static_cast<int64_t>(u));
    }
    return out;
  }
  return v.ints;
}

std::optional<uint64_t> GgufFile::opt_uint(const std::string& key) const {
  if (!has(key)) return std::nullopt;
  return get_uint(key);
}
std::optional<double> GgufFile::opt_float(const std::string& key) const {
  if (!has(key)) return std::nullopt;
  return get_float(key);
}
std::optional<bool> GgufFile::opt_bool(const std::string& key) const {
  if (!has(key)) return std::nullopt;
  return get_bool(key);
}
std::optional<std::string> GgufFile::opt_string(const std::string& key) const {
  if (!has(key)) return std::nullopt;
  return get_string(key);
}

const GgufTensorInfo& GgufFile::tensor(const std::string& name) const {
  auto it = tensor_index_.find(name);
  RAD_CHECK(it != tensor_index_.end(), "{}: missing tensor \"{}\"", path_, name);
  return tensors_[it->second];
}

// ---------------------------------------------------------------------------------------------------
// Writer

namespace {

template <typename T>
void put(std::string& out, T v) {
  out.append(reinterpret_cast<const char*>(&v), sizeof(T));
}
void put_string(std::string& out, const std::string& s) {
  put<uint64_t>(out, s.size());
  out += s;
}

void put_elements(std::string& out, GgufType t, const GgufValue& v) {
  switch (t) {
    case GgufType::kUint8: for (uint64_t x : v.uints) put<uint8_t>(out, static_cast<uint8_t>(x)); break;
    case GgufType::kUint16: for (uint64_t x : v.uints) put<uint16_t>(out, static_cast<uint16_t>(x)); break;
    case GgufType::kUint32: for (uint64_t x : v.uints) put<uint32_t>(out, static_cast<uint32_t>(x)); break;
    case GgufType::kUint64: for (uint64_t x : v.uints) put<uint64_t>(out, x); break;
    case GgufType::kInt8: for (int64_t x : v.ints) put<int8_t>(out, static_cast<int8_t>(x)); break;
    case GgufType::kInt16: for (int64_t x : v.ints) put<int16_t>(out, static_cast<int16_t>(x)); break;
    case GgufType::kInt32: for (int64_t x : v.ints) put<int32_t>(out, static_cast<int32_t>(x)); break;
    case GgufType::kInt64: for (int64_t x : v.ints) put<int64_t>(out, x); break;
    case GgufType::kBool: for (int64_t x : v.ints) put<uint8_t>(out, x != 0 ? 1 : 0); break;
    case GgufType::kFloat32: for (double x : v.floats) put<float>(out, static_cast<float>(x)); break;
    case GgufType::kFloat64: for (double x : v.floats) put<double>(out, x); break;
    case GgufType::kString: for (const auto& s : v.strings) put_string(out, s); break;
    case GgufType::kArray:
      for (const auto& a : v.arrays) {
        put<uint32_t>(out, static_cast<uint32_t>(a.array_type));
        put<uint64_t>(out, a.size());
        put_elements(out, a.array_type, a);
      }
      break;
  }
}

}  // namespace

GgufWriter::GgufWriter(uint32_t alignment) : alignment_(alignment) {
  RAD_CHECK(is_power_of_two(alignment), "GGUF writer: alignment must be a power of two, got {}", alignment);
  if (alignment != kGgufDefaultAlignment) set("general.alignment", GgufValue::u32(alignment));
}

void GgufWriter::set(const std::string& key, GgufValue value) {
  for (auto& [k, v] : kv_)
    if (k == key) {
      v = std::move(value);
      return;
    }
  kv_.emplace_back(key, std::move(value));
}

void GgufWriter::add_tensor(const std::string& name, GgmlType type, const std::vector<int64_t>& shape, const void* data,
                            uint64_t n_bytes) {
  const GgmlTypeInfo* ti = info_table(static_cast<uint32_t>(type));
  RAD_CHECK(ti != nullptr, "GGUF writer: tensor \"{}\": unknown type {}", name, ggml_type_name(static_cast<uint32_t>(type)));
  RAD_CHECK(!shape.empty() && shape.size() <= kGgufMaxDims, "GGUF writer: tensor \"{}\" has {} dims (1..{} allowed)", name,
            shape.size(), kGgufMaxDims);
  for (const auto& t : tensors_) RAD_CHECK(t.name != name, "GGUF writer: tensor \"{}\" added twice", name);
  uint64_t n = 1;
  std::vector<uint64_t> dims;
  for (auto it = shape.rbegin(); it != shape.rend(); ++it) {
    RAD_CHECK(*it >= 0, "GGUF writer: tensor \"{}\" has a negative dimension", name);
    dims.push_back(static_cast<uint64_t>(*it));
    n *= static_cast<uint64_t>(*it);
  }
  // Block types: each row (the innermost dim) whole blocks, as llama.cpp requires.
  RAD_CHECK(dims.empty() || dims[0] % ti->block_elems == 0,
            "GGUF writer: tensor \"{}\": rows of {} values are not whole {} blocks of {}", name, dims.empty() ? 0 : dims[0],
            ti->name, ti->block_elems);
  RAD_CHECK(n / ti->block_elems * ti->block_bytes == n_bytes, "GGUF writer: tensor \"{}\": {} elements of {} need {} bytes, got {}",
            name, n, ti->name, n / ti->block_elems * ti->block_bytes, n_bytes);
  tensors_.push_back({name, type, std::move(dims), data, n_bytes});
}

std::string GgufWriter::header_bytes(std::vector<uint64_t>* offsets) const {
  std::string out;
  out += "GGUF";
  put<uint32_t>(out, 3);
  put<uint64_t>(out, tensors_.size());
  put<uint64_t>(out, kv_.size());
  for (const auto& [key, v] : kv_) {
    put_string(out, key);
    put<uint32_t>(out, static_cast<uint32_t>(v.type));
    if (v.is_array()) {
      put<uint32_t>(out, static_cast<uint32_t>(v.array_type));
      put<uint64_t>(out, v.size());
      put_elements(out, v.array_type, v);
    } else {
      RAD_CHECK(v.size() == 1 || v.type == GgufType::kArray, "GGUF writer: metadata \"{}\" scalar holds {} values", key,
                v.size());
      put_elements(out, v.type, v);
    }
  }
  uint64_t offset = 0;
  for (const auto& t : tensors_) {
    put_string(out, t.name);
    put<uint32_t>(out, static_cast<uint32_t>(t.dims.size()));
    for (uint64_t d : t.dims) put<uint64_t>(out, d);
    put<uint32_t>(out, static_cast<uint32_t>(t.type));
    put<uint64_t>(out, offset);
    offsets->push_back(offset);
    offset = align_up(offset + t.n_bytes, alignment_);
  }
  out.append(align_up(out.size(), alignment_) - out.size(), '\0');
  return out;
}

void GgufWriter::write(const std::string& path) const {
  std::vector<uint64_t> offsets;
  std::string header = header_bytes(&offsets);
  write_file_atomic(path, [&](int fd) {
    write_all(fd, header.data(), header.size(), path);
    uint64_t pos = 0;
    static const char zeros[256] = {};
    for (size_t i = 0; i < tensors_.size(); ++i) {
      for (uint64_t pad = offsets[i] - pos; pad > 0;) {
        uint64_t n = std::min<uint64_t>(pad, sizeof(zeros));
        write_all(fd, zeros, n, path);
        pad -= n;
      }
      write_all(fd, tensors_[i].data, tensors_[i].n_bytes, path);
      pos = offsets[i] + tensors_[i].n_bytes;
    }
  });
}

std::string GgufWriter::to_bytes() const {
  std::vector<uint64_t> offsets;
  std::string out = header_bytes(&offsets);
  size_t base = out.size();
  for (size_t i = 0; i < tensors_.size(); ++i) {
    out.resize(base + offsets[i], '\0');
    out.append(static_cast<const char*>(tensors_[i].data), tensors_[i].n_bytes);
  }
  return out;
}

}  // namespace rad::io
