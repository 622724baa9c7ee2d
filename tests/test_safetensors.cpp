// The safetensors reader treats files as hostile: every malformed case is a clear error.
#include <ATen/ATen.h>

#include <fstream>

#include "rad/io/mapped_file.h"
#include "rad/io/safetensors.h"
#include "rad/runtime/tensor_store.h"
#include "test_util.h"

namespace rad::test {
namespace {

// Writes an 8-byte length (default: the real header size), the header text, then `data_bytes` zeros.
std::string write_raw(const TempDir& dir, const std::string& header, size_t data_bytes,
                      std::optional<uint64_t> length_override = std::nullopt) {
  std::string path = dir.file("t.safetensors");
  std::ofstream out(path, std::ios::binary);
  uint64_t n = length_override.value_or(header.size());
  for (int i = 0; i < 8; ++i) out.put(static_cast<char>((n >> (8 * i)) & 0xff));
  out << header << std::string(data_bytes, '\0');
  return path;
}

TEST(Safetensors, RoundTripIsBitExactForEveryDtype) {
  TempDir dir;
  std::vector<std::pair<std::string, at::Tensor>> tensors = {
      {"f32", at::randn({3, 5})},
      {"bf16", at::randn({7}).to(at::kBFloat16)},
      {"f16", at::randn({2, 2}).to(at::kHalf)},
      {"i64", at::arange(10, at::kLong)},
      {"empty", at::empty({0, 4})},
      {"scalar", at::tensor(3.5f).reshape({})},
  };
  io::save_safetensors(dir.file("a.safetensors"), tensors);
  auto file = io::SafetensorsFile::open(dir.file("a.safetensors"));
  EXPECT_EQ(file->entries().size(), tensors.size());
  EXPECT_EQ(file->metadata().at("format"), "pt");
  for (const auto& [name, t] : tensors) {
    at::Tensor back = file->tensor(name);
    EXPECT_EQ(back.scalar_type(), t.scalar_type()) << name;
    EXPECT_EQ(back.sizes(), t.sizes()) << name;
    EXPECT_TRUE(at::equal(back, t)) << name;
  }
}

TEST(Safetensors, TensorsOutliveTheFileHandle) {
  TempDir dir;
  at::Tensor t = at::randn({4, 4});
  io::save_safetensors(dir.file("a.safetensors"), {{"w", t}});
  at::Tensor back;
  {
    auto file = io::SafetensorsFile::open(dir.file("a.safetensors"));
    back = file->tensor("w");
  }
  EXPECT_TRUE(at::equal(back, t));
}

TEST(Safetensors, WritingToALoadedTensorNeverChangesTheFile) {
  TempDir dir;
  io::save_safetensors(dir.file("a.safetensors"), {{"w", at::zeros({8})}});
  {
    auto file = io::SafetensorsFile::open(dir.file("a.safetensors"));
    file->tensor("w").fill_(7.0);
  }
  auto file = io::SafetensorsFile::open(dir.file("a.safetensors"));
  EXPECT_TRUE(at::equal(file->tensor("w"), at::zeros({8})));
}

TEST(Safetensors, RejectsFileTooSmall) {
  TempDir dir;
  std::ofstream(dir.file("t.safetensors")) << "abc";
  EXPECT_RAD_ERROR(io::SafetensorsFile::open(dir.file("t.safetensors")), "too small");
}

TEST(Safetensors, RejectsMissingFile) {
  EXPECT_RAD_ERROR(io::SafetensorsFile::open("/nonexistent/x.safetensors"), "/nonexistent/x.safetensors");
}

TEST(Safetensors, RejectsHeaderLengthPastEndOfFile) {
  TempDir dir;
  auto path = write_raw(dir, "{}", 0, 1000);
  EXPECT_RAD_ERROR(io::SafetensorsFile::open(path), "exceeds the file size");
}

TEST(Safetensors, RejectsHugeHeaderLength) {
  TempDir dir;
  auto path = write_raw(dir, "{}", 0, ~0ull);
  EXPECT_RAD_ERROR(io::SafetensorsFile::open(path), "exceeds the limit");
}

TEST(Safetensors, RejectsInvalidJson) {
  TempDir dir;
  EXPECT_RAD_ERROR(io::SafetensorsFile::open(write_raw(dir, "{\"a\": [1,", 0)), "not valid JSON");
}

TEST(Safetensors, RejectsNonObjectHeader) {
  TempDir dir;
  EXPECT_RAD_ERROR(io::SafetensorsFile::open(write_raw(dir, "[1, 2]", 0)), "must be a JSON object");
}

TEST(Safetensors, RejectsUnknownDtypeNamingTheTensor) {
  TempDir dir;
  auto path = write_raw(dir, R"({"w": {"dtype": "F128", "shape": [1], "data_offsets": [0, 16]}})", 16);
  EXPECT_RAD_ERROR(io::SafetensorsFile::open(path), "tensor \"w\": unsupported dtype \"F128\"");
}

TEST(Safetensors, RejectsNegativeShape) {
  TempDir dir;
  auto path = write_raw(dir, R"({"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}})", 4);
  EXPECT_RAD_ERROR(io::SafetensorsFile::open(path), "non-negative integers");
}

TEST(Safetensors, RejectsOffsetsPastTheData) {
  TempDir dir;
  auto path = write_raw(dir, R"({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}})", 8);
  EXPECT_RAD_ERROR(io::SafetensorsFile::open(path), "extend past the data buffer");
}

TEST(Safetensors, RejectsSizeThatDoesNotMatchShapeAndDtype) {
  TempDir dir;
  auto path = write_raw(dir, R"({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}})", 8);
  EXPECT_RAD_ERROR(io::SafetensorsFile::open(path), "needs 12 bytes");
}

TEST(Safetensors, RejectsReversedOffsets) {
  TempDir dir;
  auto path = write_raw(dir, R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [8, 4]}})", 8);
  EXPECT_RAD_ERROR(io::SafetensorsFile::open(path), "reversed");
}

TEST(Safetensors, RejectsOverlappingTensors) {
  TempDir dir;
  auto path = write_raw(dir,
                        R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                            "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})",
                        12);
  EXPECT_RAD_ERROR(io::SafetensorsFile::open(path), "overlap");
}

TEST(Safetensors, RejectsShapeWhoseByteSizeOverflows) {
  TempDir dir;
  auto path = write_raw(
      dir, R"({"w": {"dtype": "F32", "shape": [4294967296, 4294967296, 16], "data_offsets": [0, 4]}})", 4);
  EXPECT_RAD_ERROR(io::SafetensorsFile::open(path), "overflows");
}

TEST(Safetensors, RejectsNonStringMetadata) {
  TempDir dir;
  EXPECT_RAD_ERROR(io::SafetensorsFile::open(write_raw(dir, R"({"__metadata__": {"format": 1}})", 0)),
                   "__metadata__[\"format\"] must be a string");
}

TEST(Safetensors, RejectsMissingFields) {
  TempDir dir;
  EXPECT_RAD_ERROR(io::SafetensorsFile::open(write_raw(dir, R"({"w": {"shape": [1], "data_offsets": [0, 4]}})", 4)),
                   "missing string field \"dtype\"");
  EXPECT_RAD_ERROR(io::SafetensorsFile::open(write_raw(dir, R"({"w": {"dtype": "F32", "shape": [1]}})", 4)),
                   "data_offsets");
}

TEST(Safetensors, UnalignedDataIsCopiedNotMisread) {
  // A header whose length is not a multiple of 4 puts F32 data at an unaligned address.
  TempDir dir;
  std::string header = R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  ASSERT_NE((8 + header.size()) % 4, 0u);
  std::string path = dir.file("t.safetensors");
  {
    std::ofstream out(path, std::ios::binary);
    uint64_t n = header.size();
    for (int i = 0; i < 8; ++i) out.put(static_cast<char>((n >> (8 * i)) & 0xff));
    float values[2] = {1.5f, -2.25f};
    out << header;
    out.write(reinterpret_cast<const char*>(values), sizeof(values));
  }
  auto file = io::SafetensorsFile::open(path);
  at::Tensor t = file->tensor("w");
  EXPECT_FLOAT_EQ(t[0].item<float>(), 1.5f);
  EXPECT_FLOAT_EQ(t[1].item<float>(), -2.25f);
}

// One parser (issue 32): the libtorch reader and the runtime's TensorStore refuse the same malformed
// files with the same message, naming the file, the tensor and the field.
TEST(Safetensors, TheRuntimeStoreSharesTheOneParser) {
  TempDir dir;
  struct Case {
    std::string header;
    size_t data;
    std::string message;
  };
  const std::vector<Case> cases = {
      {R"({"w": {"dtype": "F128", "shape": [1], "data_offsets": [0, 16]}})", 16, "tensor \"w\": unsupported dtype \"F128\""},
      {R"({"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}})", 4, "tensor \"w\": shape entries must be non-negative"},
      {R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}})", 8, "tensor \"w\": 4 bytes in data_offsets but dtype F32"},
      {R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}})", 4, "tensor \"w\": data_offsets [0, 8] extend past"},
      {R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4], "extra": 1}})", 4, "tensor \"w\": unknown field \"extra\""},
      // Overlapping ranges: the runtime's former parser let these alias each other.
      {R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})",
       12, "tensors \"a\" and \"b\" overlap"},
      {R"({"w": {"dtype": "F32", "shape": [1]}})", 4, "tensor \"w\": \"data_offsets\" must be an array"},
      {"[1, 2]", 0, "safetensors header must be a JSON object"},
  };
  for (const auto& c : cases) {
    std::string path = write_raw(dir, c.header, c.data);
    EXPECT_RAD_ERROR(io::SafetensorsFile::open(path), path + ": " + c.message);
    EXPECT_RAD_ERROR(runtime::TensorStore::open_file(path), path + ": " + c.message);
  }
  std::string path = write_raw(dir, "{}", 0, 1000);
  EXPECT_RAD_ERROR(runtime::TensorStore::open_file(path), "exceeds the file size");
  std::ofstream(dir.file("small.safetensors")) << "abc";
  EXPECT_RAD_ERROR(runtime::TensorStore::open_file(dir.file("small.safetensors")), "small.safetensors: file is 3 bytes, too small");
}

// Dtypes the format defines but a reader cannot compute with: the runtime keeps them (refused when
// a tensor is fetched, naming it), the libtorch reader refuses them at open, naming the tensor.
TEST(Safetensors, DtypesBeyondAReadersReachAreNamed) {
  TempDir dir;
  std::string path = write_raw(
      dir, R"({"scale": {"dtype": "F8_E4M3", "shape": [4], "data_offsets": [0, 4]}, "w": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}})",
      8);
  auto store = runtime::TensorStore::open_file(path);
  runtime::DType dtype;
  EXPECT_EQ(store->get("w", {1}, &dtype).bytes, 4u);
  EXPECT_EQ(dtype, runtime::DType::kF32);
  EXPECT_RAD_ERROR(store->get("scale", {4}, &dtype), "\"scale\" has dtype F8_E4M3");
  ASSERT_NE(store->find("scale"), nullptr);
  EXPECT_EQ(store->find("scale")->bytes, 4u);
  EXPECT_EQ(store->find("missing"), nullptr);
  EXPECT_RAD_ERROR(io::SafetensorsFile::open(path), "tensor \"scale\": unsupported dtype \"F8_E4M3\"");
}

// The one mmap helper: the errors name the file; an empty file maps to nothing instead of failing in mmap.
TEST(Safetensors, MappedFileNamesTheFile) {
  TempDir dir;
  EXPECT_RAD_ERROR(io::MappedFile::open(dir.file("none.bin")), "none.bin: cannot open");
  EXPECT_RAD_ERROR(io::MappedFile::open(dir.path()), ": not a regular file");
  std::ofstream(dir.file("empty.bin")).close();
  auto empty = io::MappedFile::open(dir.file("empty.bin"));
  EXPECT_EQ(empty->size(), 0u);
  EXPECT_EQ(empty->data(), nullptr);
  std::ofstream(dir.file("four.bin")) << "abcd";
  auto four = io::MappedFile::open(dir.file("four.bin"), /*writable=*/true);
  ASSERT_EQ(four->size(), 4u);
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(four->data()), 4), "abcd");
  four->mutable_data()[0] = 'X';  // private copy-on-write: the file keeps its bytes
  auto again = io::MappedFile::open(dir.file("four.bin"));
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(again->data()), 4), "abcd");
  EXPECT_EQ(again->mutable_data(), nullptr) << "a read-only mapping hands out no writable pointer";
  EXPECT_RAD_ERROR(runtime::TensorStore::open_file(dir.file("empty.bin")), "empty.bin: file is 0 bytes, too small");
}

}  // namespace
}  // namespace rad::test
