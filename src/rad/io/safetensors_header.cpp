#include "rad/io/safetensors_header.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "rad/core/error.h"

namespace rad::io {
namespace {

constexpr size_t kMaxRank = 16;

bool mul_overflows(uint64_t a, uint64_t b, uint64_t* out) { return __builtin_mul_overflow(a, b, out); }

}  // namespace

size_t safetensors_element_size(const std::string& d) {
  if (d == "F64" || d == "I64" || d == "U64") return 8;
  if (d == "F32" || d == "I32" || d == "U32") return 4;
  if (d == "F16" || d == "BF16" || d == "I16" || d == "U16") return 2;
  if (d == "I8" || d == "U8" || d == "BOOL" || d == "F8_E4M3" || d == "F8_E5M2") return 1;
  return 0;
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
    size_t elem = safetensors_element_size(entry.dtype);
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

SafetensorsLayout parse_safetensors(const std::string& path, const uint8_t* bytes, size_t size) {
  const uint64_t file_size = size;
  RAD_CHECK(file_size >= 8, "{}: file is {} bytes, too small for a safetensors header (8-byte length + JSON); truncated?",
            path, file_size);
  uint64_t header_size = 0;
  for (int i = 7; i >= 0; --i) header_size = (header_size << 8) | bytes[i];  // little-endian
  RAD_CHECK(header_size <= kMaxSafetensorsHeaderBytes,
            "{}: header length {} exceeds the limit of {} bytes; not a safetensors file?", path, header_size,
            kMaxSafetensorsHeaderBytes);
  RAD_CHECK(header_size <= file_size - 8, "{}: header length {} exceeds the file size {}; file truncated?", path,
            header_size, file_size);
  RAD_CHECK(header_size >= 2, "{}: header length {} is too small for a JSON object", path, header_size);
  SafetensorsLayout layout;
  layout.data_offset = 8 + header_size;
  layout.data_size = file_size - 8 - header_size;
  parse_safetensors_header(path, reinterpret_cast<const char*>(bytes + 8), header_size, layout.data_size,
                           &layout.entries, &layout.metadata);
  return layout;
}

}  // namespace rad::io
