// The safetensors reader treats files as hostile: every malformed case is a clear error.
#include <ATen/ATen.h>

#include <fstream>

#include "rad/io/safetensors.h"
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

}  // namespace
}  // namespace rad::test
