#include "rad/io/npy.h"

#include <cstring>
#include <regex>

#include "rad/core/atomic_file.h"
#include "rad/core/error.h"

namespace rad::io {
namespace {
const char kMagic[] = "\x93NUMPY";

const char* descr_for(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return "<f4";
    case at::kDouble: return "<f8";
    case at::kLong: return "<i8";
    case at::kInt: return "<i4";
    case at::kShort: return "<i2";
    case at::kByte: return "|u1";
    default: return nullptr;
  }
}
}  // namespace

void save_npy(const std::string& path, const at::Tensor& tensor) {
  at::Tensor t = tensor.detach().to(at::kCPU).contiguous();
  const char* descr = descr_for(t.scalar_type());
  RAD_CHECK(descr != nullptr, "{}: cannot write dtype {} to .npy", path, c10::toString(t.scalar_type()));
  std::string shape;
  for (int64_t d : t.sizes()) shape += std::to_string(d) + ", ";
  if (t.dim() > 1) shape.resize(shape.size() - 1);  // "(3,)" for 1-d, "(3, 4)" otherwise
  if (t.dim() > 1) shape.pop_back();
  std::string header = std::string("{'descr': '") + descr + "', 'fortran_order': False, 'shape': (" + shape + "), }";
  size_t total = 10 + header.size() + 1;
  size_t pad = (64 - total % 64) % 64;
  header += std::string(pad, ' ') + "\n";
  uint16_t len = static_cast<uint16_t>(header.size());
  write_file_atomic(path, [&](int fd) {
    write_all(fd, kMagic, 6, path);
    const uint8_t version[2] = {1, 0};
    write_all(fd, version, 2, path);
    const uint8_t len_bytes[2] = {static_cast<uint8_t>(len & 0xff), static_cast<uint8_t>(len >> 8)};
    write_all(fd, len_bytes, 2, path);
    write_all(fd, header.data(), header.size(), path);
    write_all(fd, t.data_ptr(), t.numel() * t.element_size(), path);
  });
}

at::Tensor load_npy(const std::string& path) {
  std::string bytes = read_text_file(path);
  RAD_CHECK(bytes.size() >= 10 && std::memcmp(bytes.data(), kMagic, 6) == 0, "{}: not a .npy file", path);
  size_t header_len = static_cast<uint8_t>(bytes[8]) | (static_cast<size_t>(static_cast<uint8_t>(bytes[9])) << 8);
  RAD_CHECK(bytes[6] == 1 && 10 + header_len <= bytes.size(), "{}: unsupported or truncated .npy header", path);
  std::string header = bytes.substr(10, header_len);
  std::smatch m;
  RAD_CHECK(std::regex_search(header, m, std::regex("'descr': *'([<|][a-z][0-9])'")), "{}: .npy header has no descr", path);
  std::string descr = m[1];
  RAD_CHECK(header.find("'fortran_order': False") != std::string::npos, "{}: only C-ordered .npy is supported", path);
  RAD_CHECK(std::regex_search(header, m, std::regex("'shape': *\\(([0-9, ]*)\\)")), "{}: .npy header has no shape", path);
  std::vector<int64_t> shape;
  std::string dims = m[1];
  std::regex num("[0-9]+");
  for (auto it = std::sregex_iterator(dims.begin(), dims.end(), num); it != std::sregex_iterator(); ++it)
    shape.push_back(std::stoll(it->str()));
  at::ScalarType type;
  if (descr == "<f4") type = at::kFloat;
  else if (descr == "<f8") type = at::kDouble;
  else if (descr == "<i8") type = at::kLong;
  else if (descr == "<i4") type = at::kInt;
  else if (descr == "<i2") type = at::kShort;
  else if (descr == "|u1") type = at::kByte;
  else fail("{}: unsupported .npy dtype {}", path, descr);
  at::Tensor t = at::empty(shape, at::TensorOptions().dtype(type));
  size_t nbytes = t.numel() * t.element_size();
  RAD_CHECK(10 + header_len + nbytes == bytes.size(), "{}: data size does not match shape", path);
  std::memcpy(t.data_ptr(), bytes.data() + 10 + header_len, nbytes);
  return t;
}

}  // namespace rad::io
