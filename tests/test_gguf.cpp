// GGUF: metadata of every type round-trips, dequantisation matches the block layouts on hand-built
// blocks, export -> import is exact for F32/F16/BF16 (same logits), and hostile files are errors.
#include <ATen/ATen.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>

#include "rad/core/atomic_file.h"
#include "rad/io/checkpoint.h"
#include "rad/io/gguf.h"
#include "rad/core/half_float.h"
#include "rad/io/gguf_dequant.h"
#include "rad/io/gguf_llama.h"
#include "rad/io/gguf_quantize.h"
#include "rad/distill/init_from_attention.h"
#include "rad/runtime/engine.h"
#include "rad/io/hybrid_checkpoint.h"
#include "rad/io/safetensors.h"
#include "rad/model/causal_lm.h"
#include "rad/tokenizer/tokenizer.h"
#include "test_util.h"

namespace rad::test {
namespace {

namespace fs = std::filesystem;
using io::GgmlType;
using io::GgufFile;
using io::GgufType;
using io::GgufValue;
using io::GgufWriter;

std::shared_ptr<GgufFile> parse_bytes(const std::string& bytes) {
  return GgufFile::parse("mem.gguf", reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
}

uint16_t half_bits(float v) { return c10::Half(v).x; }

void put_u16(std::vector<uint8_t>& b, size_t at, uint16_t v) {
  b[at] = v & 0xff;
  b[at + 1] = v >> 8;
}

// ---------------------------------------------------------------------------------------------------
// Container

TEST(Gguf, MetadataOfEveryTypeRoundTrips) {
  GgufWriter w;
  auto scalar = [](GgufType t, auto v) {
    GgufValue x;
    x.type = t;
    if constexpr (std::is_floating_point_v<decltype(v)>) x.floats = {static_cast<double>(v)};
    else if (t == GgufType::kUint8 || t == GgufType::kUint16 || t == GgufType::kUint32 || t == GgufType::kUint64)
      x.uints = {static_cast<uint64_t>(v)};
    else x.ints = {static_cast<int64_t>(v)};
    return x;
  };
  w.set("u8", scalar(GgufType::kUint8, 200));
  w.set("i8", scalar(GgufType::kInt8, -100));
  w.set("u16", scalar(GgufType::kUint16, 60000));
  w.set("i16", scalar(GgufType::kInt16, -30000));
  w.set("u32", GgufValue::u32(4000000000u));
  w.set("i32", GgufValue::i32(-2000000000));
  w.set("f32", GgufValue::f32(1.5f));
  w.set("bool", GgufValue::boolean(true));
  w.set("str", GgufValue::string("h\xc3\xa9llo"));
  w.set("u64", GgufValue::u64(18000000000000000000ull));
  w.set("i64", scalar(GgufType::kInt64, -9000000000000000000ll));
  w.set("f64", scalar(GgufType::kFloat64, 0.1));
  w.set("strs", GgufValue::string_array({"a", "", "b c"}));
  w.set("i32s", GgufValue::i32_array({1, -2, 3}));
  GgufValue nested;
  nested.type = GgufType::kArray;
  nested.array_type = GgufType::kArray;
  nested.arrays = {GgufValue::i32_array({7, 8}), GgufValue::string_array({"x"})};
  w.set("nested", nested);
  std::string bytes = w.to_bytes();
  auto f = parse_bytes(bytes);
  EXPECT_EQ(f->version(), 3u);
  EXPECT_EQ(f->keys().size(), 15u);
  EXPECT_EQ(f->keys()[0], "u8");
  EXPECT_EQ(f->get_uint("u8"), 200u);
  EXPECT_EQ(f->get_int("i8"), -100);
  EXPECT_EQ(f->get_uint("u16"), 60000u);
  EXPECT_EQ(f->get_int("i16"), -30000);
  EXPECT_EQ(f->get_uint("u32"), 4000000000u);
  EXPECT_EQ(f->get_int("i32"), -2000000000);
  EXPECT_EQ(f->get_float("f32"), 1.5);
  EXPECT_TRUE(f->get_bool("bool"));
  EXPECT_EQ(f->get_string("str"), "h\xc3\xa9llo");
  EXPECT_EQ(f->get_uint("u64"), 18000000000000000000ull);
  EXPECT_EQ(f->get_int("i64"), -9000000000000000000ll);
  EXPECT_EQ(f->get_float("f64"), 0.1);
  EXPECT_EQ(f->get_string_array("strs"), (std::vector<std::string>{"a", "", "b c"}));
  EXPECT_EQ(f->get_int_array("i32s"), (std::vector<int64_t>{1, -2, 3}));
  const GgufValue* n = f->find("nested");
  ASSERT_NE(n, nullptr);
  ASSERT_EQ(n->arrays.size(), 2u);
  EXPECT_EQ(n->arrays[0].ints, (std::vector<int64_t>{7, 8}));
  EXPECT_EQ(n->arrays[1].strings, (std::vector<std::string>{"x"}));
  // Wrong-type access names the file and key.
  EXPECT_RAD_ERROR(f->get_string("u32"), "mem.gguf: metadata \"u32\" must be a string, got uint32");
  EXPECT_RAD_ERROR(f->get_uint("i8"), "\"i8\" must not be negative");
  EXPECT_RAD_ERROR(f->get_uint("missing"), "mem.gguf: missing metadata \"missing\"");
}

TEST(Gguf, TensorsSitAtAlignedOffsetsAndKeepTheirBytes) {
  for (uint32_t alignment : {32u, 64u, 8u}) {
    GgufWriter w(alignment);
    std::vector<float> a = {1, 2, 3, 4, 5, 6};
    std::vector<uint16_t> b = {0x3c00, 0xc000, 0x7bff};
    w.add_tensor("a", GgmlType::kF32, {2, 3}, a.data(), a.size() * 4);
    w.add_tensor("b", GgmlType::kF16, {3}, b.data(), b.size() * 2);
    std::string bytes = w.to_bytes();
    auto f = parse_bytes(bytes);
    EXPECT_EQ(f->alignment(), alignment);
    const auto& ta = f->tensor("a");
    EXPECT_EQ(ta.dims, (std::vector<uint64_t>{3, 2}));  // ggml order: innermost first
    EXPECT_EQ(ta.shape(), (std::vector<int64_t>{2, 3}));
    const auto& tb = f->tensor("b");
    EXPECT_EQ(tb.offset % alignment, 0u);
    EXPECT_EQ(std::memcmp(f->tensor_data(ta), a.data(), 24), 0);
    std::vector<float> out(3);
    io::dequantize(GgmlType::kF16, f->tensor_data(tb), 3, out.data());
    EXPECT_EQ(out, (std::vector<float>{1.0f, -2.0f, 65504.0f}));
  }
}

// ---------------------------------------------------------------------------------------------------
// Dequantisation, against blocks packed here from the format's definition

TEST(GgufDequant, HalfAndBFloat16ConversionIsExactForEveryBitPattern) {
  for (uint32_t bits = 0; bits < 65536; ++bits) {
    float want = static_cast<float>(c10::Half(static_cast<uint16_t>(bits), c10::Half::from_bits()));
    float got = f16_to_f32(static_cast<uint16_t>(bits));
    if (std::isnan(want)) {
      EXPECT_TRUE(std::isnan(got)) << bits;
    } else {
      ASSERT_EQ(std::memcmp(&want, &got, 4), 0) << "half bits " << bits;
    }
    float want_bf = static_cast<float>(c10::BFloat16(static_cast<uint16_t>(bits), c10::BFloat16::from_bits()));
    float got_bf = bf16_to_f32(static_cast<uint16_t>(bits));
    if (!std::isnan(want_bf)) {
      ASSERT_EQ(std::memcmp(&want_bf, &got_bf, 4), 0) << "bf16 bits " << bits;
    }
  }
}

TEST(GgufDequant, Q8_0) {
  std::vector<uint8_t> b(34 * 2);
  std::vector<float> want(64);
  for (int blk = 0; blk < 2; ++blk) {
    float d = blk == 0 ? 0.5f : -0.125f;
    put_u16(b, 34 * blk, half_bits(d));
    for (int i = 0; i < 32; ++i) {
      int8_t q = static_cast<int8_t>(i * 8 - 128 + blk);
      b[34 * blk + 2 + i] = static_cast<uint8_t>(q);
      want[32 * blk + i] = d * q;
    }
  }
  std::vector<float> got(64);
  io::dequantize(GgmlType::kQ8_0, b.data(), 64, got.data());
  EXPECT_EQ(got, want);
}

TEST(GgufDequant, Q4_0AndQ4_1) {
  // Value i of a block: low nibble of byte i for i < 16, high nibble of byte i - 16 otherwise.
  std::mt19937 rng(1);
  std::vector<int> q(32);
  for (int& v : q) v = static_cast<int>(rng() % 16);
  std::vector<uint8_t> b0(18), b1(20);
  put_u16(b0, 0, half_bits(0.25f));
  put_u16(b1, 0, half_bits(0.75f));
  put_u16(b1, 2, half_bits(-3.0f));
  for (int i = 0; i < 32; ++i) {
    int byte = i % 16, shift = i < 16 ? 0 : 4;
    b0[2 + byte] |= q[i] << shift;
    b1[4 + byte] |= q[i] << shift;
  }
  std::vector<float> got0(32), got1(32);
  io::dequantize(GgmlType::kQ4_0, b0.data(), 32, got0.data());
  io::dequantize(GgmlType::kQ4_1, b1.data(), 32, got1.data());
  for (int i = 0; i < 32; ++i) {
    EXPECT_EQ(got0[i], 0.25f * (q[i] - 8)) << i;
    EXPECT_EQ(got1[i], 0.75f * q[i] - 3.0f) << i;
  }
}

TEST(GgufDequant, Q4_K) {
  // 8 sub-blocks of 32 values, each with a 6-bit scale and a 6-bit min packed into 12 bytes:
  // bytes 0-3 low 6 bits = scales 0-3, top 2 bits = bits 4-5 of scales 4-7;
  // bytes 4-7 low 6 bits = mins 0-3, top 2 bits = bits 4-5 of mins 4-7;
  // bytes 8-11: low nibble = bits 0-3 of scales 4-7, high nibble = bits 0-3 of mins 4-7.
  std::mt19937 rng(2);
  int sc[8], mn[8];
  for (int s = 0; s < 8; ++s) {
    sc[s] = static_cast<int>(rng() % 64);
    mn[s] = static_cast<int>(rng() % 64);
  }
  std::vector<uint8_t> b(144);
  const float d = 0.5f, dmin = 0.0625f;
  put_u16(b, 0, half_bits(d));
  put_u16(b, 2, half_bits(dmin));
  for (int s = 0; s < 4; ++s) {
    b[4 + s] = static_cast<uint8_t>(sc[s] | ((sc[s + 4] >> 4) << 6));
    b[4 + 4 + s] = static_cast<uint8_t>(mn[s] | ((mn[s + 4] >> 4) << 6));
    b[4 + 8 + s] = static_cast<uint8_t>((sc[s + 4] & 15) | ((mn[s + 4] & 15) << 4));
  }
  // Value i: byte 32 * (i / 64) + i % 32 of the quants, low nibble when i % 64 < 32, else high.
  std::vector<int> q(256);
  for (int i = 0; i < 256; ++i) {
    q[i] = static_cast<int>(rng() % 16);
    b[16 + 32 * (i / 64) + i % 32] |= q[i] << ((i % 64) < 32 ? 0 : 4);
  }
  std::vector<float> got(256);
  io::dequantize(GgmlType::kQ4_K, b.data(), 256, got.data());
  for (int i = 0; i < 256; ++i) EXPECT_EQ(got[i], d * sc[i / 32] * q[i] - dmin * mn[i / 32]) << i;
}

TEST(GgufDequant, Q6_K) {
  // Value i (half h = i / 128, r = i % 128, quarter k = r / 32, l = r % 32): low 4 bits in
  // ql[64h + l + 32 (k % 2)] (low nibble for k < 2, high for k >= 2), high 2 bits in bits 2k, 2k+1
  // of qh[32h + l]; scale = int8 scales[i / 16]; x = d * scale * (q - 32).
  std::mt19937 rng(3);
  std::vector<uint8_t> b(210);
  const float d = 0.125f;
  std::vector<int> q(256), sc(16);
  for (int s = 0; s < 16; ++s) {
    sc[s] = static_cast<int>(rng() % 256) - 128;
    b[192 + s] = static_cast<uint8_t>(static_cast<int8_t>(sc[s]));
  }
  put_u16(b, 208, half_bits(d));
  for (int i = 0; i < 256; ++i) {
    q[i] = static_cast<int>(rng() % 64);
    int h = i / 128, r = i % 128, k = r / 32, l = r % 32;
    b[64 * h + l + 32 * (k % 2)] |= (q[i] & 15) << (k < 2 ? 0 : 4);
    b[128 + 32 * h + l] |= (q[i] >> 4) << (2 * k);
  }
  std::vector<float> got(256);
  io::dequantize(GgmlType::kQ6_K, b.data(), 256, got.data());
  for (int i = 0; i < 256; ++i) EXPECT_EQ(got[i], d * sc[i / 16] * (q[i] - 32)) << i;
}

// Random blocks of each type next to their dequantisation by PyPI's `gguf` package
// (tests/python/make_gguf_blocks.py): an independent implementation of the same definitions.
TEST(GgufDequant, MatchesThePythonGgufPackageOnRandomBlocks) {
  auto f = GgufFile::open(source_dir() + "/tests/fixtures/gguf/quant_blocks.gguf");
  int checked = 0;
  for (const char* name : {"Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q4_K", "Q6_K"}) {
    const auto& q = f->tensor(name);
    const auto& e = f->tensor(std::string(name) + ".expected");
    ASSERT_EQ(q.shape(), e.shape()) << name;
    std::vector<float> got(q.n_elems), want(e.n_elems);
    io::dequantize(q.type, f->tensor_data(q), q.n_elems, got.data());
    io::dequantize(e.type, f->tensor_data(e), e.n_elems, want.data());
    for (size_t i = 0; i < got.size(); ++i) {
      // numpy may group the products differently ((d * scale) * q vs d * (scale * q)): allow the
      // last bit of float32 rounding, nothing more.
      ASSERT_NEAR(got[i], want[i], 2e-7f * std::max(1.0f, std::fabs(want[i]))) << name << " value " << i;
    }
    checked += static_cast<int>(got.size());
  }
  EXPECT_EQ(checked, 4 * 256 + 2 * 2048);
}

TEST(GgufDequant, RefusesTypesAndCountsItCannotHandle) {
  std::vector<uint8_t> b(256);
  std::vector<float> out(256);
  EXPECT_RAD_ERROR(io::dequantize(GgmlType::kQ5_K, b.data(), 256, out.data()), "cannot dequantize ggml type Q5_K");
  EXPECT_RAD_ERROR(io::dequantize(GgmlType::kQ8_0, b.data(), 31, out.data()), "not a whole number of 32-value blocks");
}

// ---------------------------------------------------------------------------------------------------
// Llama mapping

TEST(GgufLlama, RopeRowPermutationInterleavesHalvesAndInverts) {
  // One head of 4 rows: HF rotate-half order [x0, x1 | y0, y1] -> GGUF pairs [x0, y0, x1, y1].
  at::Tensor w = at::arange(8, at::kFloat).reshape({4, 2});
  at::Tensor g = io::rope_rows_hf_to_gguf(w, 1);
  EXPECT_TRUE(at::equal(g.select(1, 0), at::tensor({0.f, 4.f, 2.f, 6.f})));
  at::Tensor multi = at::randn({3 * 8, 5});
  EXPECT_TRUE(at::equal(io::rope_rows_gguf_to_hf(io::rope_rows_hf_to_gguf(multi, 3), 3), multi));
  at::Tensor bias = at::randn({2 * 6});
  EXPECT_TRUE(at::equal(io::rope_rows_gguf_to_hf(io::rope_rows_hf_to_gguf(bias, 2), 2), bias));
  EXPECT_EQ(io::hf_to_gguf_name("model.layers.12.self_attn.o_proj.weight"), "blk.12.attn_output.weight");
  EXPECT_EQ(io::gguf_to_hf_name("blk.3.ffn_down.bias"), "model.layers.3.mlp.down_proj.bias");
  EXPECT_EQ(io::gguf_to_hf_name("blk.3.unknown.weight"), "");
}

// A tiny teacher with the trained KJV tokenizer (4096 tokens), its weights rounded to `round_to`.
std::string make_teacher(const TempDir& dir, bool tied, int64_t head_dim, at::ScalarType round_to, int64_t d_model = 32,
                         int64_t d_ff = 48) {
  ModelConfig c;
  c.n_vocab = 4096;
  c.d_model = d_model;
  c.n_layer = 2;
  c.n_head = 4;
  c.n_head_kv = 2;
  c.d_head = head_dim;
  c.d_ff = d_ff;
  c.max_position_embeddings = 128;
  c.rms_norm_eps = 1e-5;
  c.rope_theta = 10000.0;
  c.tie_word_embeddings = tied;
  c.bos_token_id = 4094;
  c.eos_token_ids = {4095};
  CausalLM m(c);
  init_parameters(*m, 0.1, 7);
  {
    at::NoGradGuard g;
    for (auto& p : m->parameters()) p.copy_(p.to(round_to).to(at::kFloat));
    // Norm weights away from 1 so that a mix-up would show.
    for (auto& p : m->parameters())
      if (p.dim() == 1) p.copy_((at::rand_like(p) + 0.5).to(round_to).to(at::kFloat));
  }
  std::string out = dir.file(tied ? "teacher_tied" : "teacher");
  io::save_causal_lm(m, out);
  io::copy_tokenizer_files(source_dir() + "/tests/fixtures/tokenizers/trained_kjv", out);
  return out;
}

struct RoundTripCase {
  GgmlType type;
  at::ScalarType round_to;
  bool tied;
  int64_t head_dim;
};

class GgufRoundTrip : public ::testing::TestWithParam<RoundTripCase> {};

TEST_P(GgufRoundTrip, ExportThenImportIsExactAndGivesIdenticalLogits) {
  const RoundTripCase& rc = GetParam();
  TempDir dir;
  std::string teacher = make_teacher(dir, rc.tied, rc.head_dim, rc.round_to);
  std::string gguf = dir.file("t.gguf");
  io::export_gguf(teacher, gguf, rc.type);

  // What llama.cpp reads: the format's rules and the llama metadata.
  auto f = GgufFile::open(gguf);
  EXPECT_EQ(f->get_string("general.architecture"), "llama");
  EXPECT_EQ(f->get_uint("llama.block_count"), 2u);
  EXPECT_EQ(f->get_uint("llama.attention.head_count_kv"), 2u);
  EXPECT_EQ(f->get_uint("llama.rope.dimension_count"), static_cast<uint64_t>(rc.head_dim));
  EXPECT_EQ(f->get_string_array("tokenizer.ggml.tokens").size(), 4096u);
  EXPECT_EQ(f->get_string("tokenizer.ggml.pre"), "llama-bpe");
  EXPECT_EQ(f->get_uint("tokenizer.ggml.bos_token_id"), 4094u);
  EXPECT_TRUE(f->get_bool("tokenizer.ggml.add_bos_token"));
  EXPECT_EQ(f->has_tensor("output.weight"), !rc.tied);
  for (const auto& t : f->tensors()) {
    EXPECT_EQ(t.offset % f->alignment(), 0u) << t.name;
    EXPECT_EQ(t.type, t.dims.size() == 1 ? GgmlType::kF32 : rc.type) << t.name;
  }
  auto hf = io::read_model_tensors(teacher);
  const auto& q = f->tensor("blk.1.attn_q.weight");
  EXPECT_EQ(q.shape(), (std::vector<int64_t>{4 * rc.head_dim, 32}));
  at::Tensor q_gguf = at::empty(q.shape(), at::kFloat);
  io::dequantize(q.type, f->tensor_data(q), q.n_elems, q_gguf.data_ptr<float>());
  EXPECT_TRUE(at::equal(q_gguf, io::rope_rows_hf_to_gguf(hf.at("model.layers.1.self_attn.q_proj.weight"), 4)));

  std::string back = dir.file("back");
  io::import_gguf(gguf, back, at::kFloat);
  auto imported = io::read_model_tensors(back);
  ASSERT_EQ(imported.size(), hf.size());
  for (const auto& [name, t] : hf) {
    ASSERT_TRUE(imported.count(name)) << name;
    EXPECT_TRUE(at::equal(imported.at(name), t)) << name;
  }
  if (rc.type == GgmlType::kF16) {  // import --dtype float16 keeps the F16 file's bits (llama.cpp's weights)
    std::string half = dir.file("half");
    io::import_gguf(gguf, half, at::kHalf);
    auto h = io::read_model_tensors(half);
    ASSERT_EQ(h.size(), hf.size());
    for (const auto& [name, t] : hf) {
      EXPECT_EQ(h.at(name).scalar_type(), at::kHalf) << name;
      EXPECT_TRUE(at::equal(h.at(name).to(at::kFloat), t)) << name;
    }
    EXPECT_EQ(nlohmann::json::parse(read_text_file(half + "/config.json"))["torch_dtype"], "float16");
  }
  CausalLM a = io::load_causal_lm(teacher, at::kFloat);
  CausalLM b = io::load_causal_lm(back, at::kFloat);
  EXPECT_EQ(b->config().tie_word_embeddings, rc.tied);
  EXPECT_EQ(b->config().d_head, rc.head_dim);
  at::Tensor ids = at::randint(0, 4096, {2, 17}, at::kLong);
  at::NoGradGuard g;
  EXPECT_TRUE(at::equal(a->forward(ids), b->forward(ids)));

  // The rebuilt tokenizer encodes and decodes as the original.
  Tokenizer ta = Tokenizer::load(teacher), tb = Tokenizer::load(back);
  const std::string text = "In the beginning God created the heaven and the earth. 1234 caf\xc3\xa9!\n  x";
  EXPECT_EQ(ta.encode(text, true), tb.encode(text, true));
  EXPECT_EQ(ta.encode(text, false), tb.encode(text, false));
  EXPECT_EQ(tb.decode(tb.encode(text, false), false), text);
  EXPECT_EQ(tb.bos_id(), ta.bos_id());
  EXPECT_EQ(tb.eos_id(), ta.eos_id());
  for (int64_t id = 0; id < 4096; ++id) ASSERT_EQ(ta.id_to_token(id), tb.id_to_token(id)) << id;
}

INSTANTIATE_TEST_SUITE_P(Types, GgufRoundTrip,
                         ::testing::Values(RoundTripCase{GgmlType::kF32, at::kFloat, true, 8},
                                           RoundTripCase{GgmlType::kF16, at::kHalf, false, 8},
                                           RoundTripCase{GgmlType::kBF16, at::kBFloat16, false, 16}));

TEST(GgufLlama, ExportRefusesHybridsAndUnknownPreTokenizers) {
  TempDir dir;
  std::string teacher = make_teacher(dir, true, 8, at::kFloat);
  // A SentencePiece-style (Metaspace) vocabulary has no gpt2 GGUF form.
  fs::copy_file(source_dir() + "/tests/fixtures/tokenizers/llama2/tokenizer.json", teacher + "/tokenizer.json",
                fs::copy_options::overwrite_existing);
  EXPECT_RAD_ERROR(io::export_gguf(teacher, dir.file("x.gguf"), GgmlType::kF32), "byte-level BPE");
  EXPECT_FALSE(fs::exists(dir.file("x.gguf")));
}

// ---------------------------------------------------------------------------------------------------
// The runtime on GGUF files (generate, chat, bench and serve take a .gguf as they take a directory)

// Runtime logits of every position, [T * V].
std::vector<float> runtime_logits(const std::string& model, const std::vector<int64_t>& ids, int threads = 1) {
  auto m = runtime::Model::load(model);
  runtime::SessionOptions o;
  o.n_ctx = static_cast<int64_t>(ids.size());
  o.threads = threads;
  runtime::Session s(m, o);
  std::vector<float> out(ids.size() * m->config().n_vocab);
  s.forward(ids.data(), static_cast<int64_t>(ids.size()), out.data());
  return out;
}

std::vector<int64_t> some_ids(int64_t n) {
  std::vector<int64_t> ids;
  for (int64_t t = 0; t < n; ++t) ids.push_back((t * 977 + 5) % 4096);
  return ids;
}

// max |a - b| / max |b|
double relative_max_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double d = 0, m = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    d = std::max(d, static_cast<double>(std::abs(a[i] - b[i])));
    m = std::max(m, static_cast<double>(std::abs(b[i])));
  }
  return d / m;
}

// A hybrid of make_teacher's teacher: heads (0,1) and (1,2) kept, the rest random SSM heads, with
// conv, gate and biases (so every SSM tensor kind is in the file).
std::string make_hybrid_dir(const TempDir& dir) {
  std::string teacher_dir = make_teacher(dir, false, 8, at::kFloat);
  CausalLM teacher = io::load_causal_lm(teacher_dir, at::kFloat);
  HybridConfig hc;
  hc.base = teacher->config();
  hc.plan.kept_heads = {{0, 1}, {1, 2}};
  hc.ssm.d_state = 4;
  hc.ssm.conv = hc.ssm.gate = hc.ssm.bias = true;
  CausalLM hybrid = convert_from_teacher(teacher, hc, SsmInit::kRandom, 3);
  std::string out = dir.file("hybrid");
  io::save_hybrid(hybrid, hc, out);
  io::copy_tokenizer_files(teacher_dir, out);
  return out;
}

TEST(GgufRuntime, AFloatFileRunsBitForBitAsItsDirectory) {
  TempDir dir;
  std::string teacher = make_teacher(dir, false, 8, at::kHalf);
  io::export_gguf(teacher, dir.file("t.gguf"), GgmlType::kF32);
  io::export_gguf(teacher, dir.file("h.gguf"), GgmlType::kF16);  // the weights are f16 values: exact too
  const std::vector<int64_t> ids = some_ids(19);
  const std::vector<float> expected = runtime_logits(teacher, ids);
  EXPECT_EQ(runtime_logits(dir.file("t.gguf"), ids), expected);
  EXPECT_EQ(runtime_logits(dir.file("h.gguf"), ids), expected);
  EXPECT_EQ(runtime::Model::load(dir.file("h.gguf"))->weight_dtypes(), "F16+F32");
  // The file's tokenizer is the directory's.
  const std::string text = "And God said, Let there be light: and there was light. 42";
  EXPECT_EQ(Tokenizer::load(dir.file("h.gguf")).encode(text, true), Tokenizer::load(teacher).encode(text, true));
}

TEST(GgufRuntime, QuantizedFilesStayQuantizedAndMatchTheirDequantizedImport) {
  TempDir dir;
  std::string teacher = make_teacher(dir, true, 8, at::kFloat);
  const std::vector<int64_t> ids = some_ids(23);
  for (GgmlType type : {GgmlType::kQ8_0, GgmlType::kQ4_0}) {
    const std::string name = type == GgmlType::kQ8_0 ? "Q8_0" : "Q4_0";
    const std::string gguf = dir.file(name + ".gguf");
    io::export_gguf(teacher, gguf, type);
    auto f = GgufFile::open(gguf);
    EXPECT_EQ(f->tensor("blk.0.attn_q.weight").type, type);
    EXPECT_EQ(f->tensor("blk.0.ffn_down.weight").type, GgmlType::kF16);  // rows of 48: not whole blocks
    EXPECT_EQ(f->get_uint("general.file_type"), type == GgmlType::kQ8_0 ? 7u : 2u);
    auto m = runtime::Model::load(gguf);
    EXPECT_EQ(m->weight_dtypes(), name + "+F32+F16");  // in load order: the embedding first
    EXPECT_LT(m->weight_bytes(), runtime::Model::load(teacher)->weight_bytes() / 2);
    // The same weights dequantised into a float directory: the runtime's difference is the 8-bit
    // rounding of the activations alone. Measured max |diff| / max |logit|: Q8_0 0.013, Q4_0 0.019
    // (against the float teacher, weights' rounding included: Q8_0 0.020, Q4_0 0.27).
    io::import_gguf(gguf, dir.file(name + "_f32"), at::kFloat);
    const std::vector<float> logits = runtime_logits(gguf, ids);
    const double rel = relative_max_diff(logits, runtime_logits(dir.file(name + "_f32"), ids));
    // Several threads share one quantised copy of the activations: the same bits as one thread.
    EXPECT_EQ(runtime_logits(gguf, ids, 3), logits) << name;
    // Decode token by token (one row of activations a step) gives prefill's bits too.
    {
      auto m = runtime::Model::load(gguf);
      runtime::SessionOptions o;
      o.n_ctx = static_cast<int64_t>(ids.size());
      o.threads = 2;
      runtime::Session s(m, o);
      for (size_t t = 0; t < ids.size(); ++t) {
        const float* step = s.step(ids[t]);
        ASSERT_TRUE(std::equal(step, step + 4096, logits.begin() + t * 4096)) << name << " token " << t;
      }
    }
    EXPECT_LT(rel, 0.03) << name;
    EXPECT_GT(rel, 0.0) << name;  // the activations are quantised: not the float path in disguise
  }
}

// Q5_0, Q4_K and Q6_K files (`quantize --type`), run as stored: rows of 256 and 512 values are whole
// super-blocks; the 32-value rows of the small teacher fall back as llama-quantize's do (Q4_K -> Q5_0,
// Q6_K -> Q8_0) and 48-value rows stay F16. Against the same weights dequantised, only the activations'
// 8-bit rounding differs; threads and token-by-token decode keep the bits.
TEST(GgufRuntime, KQuantFilesRunAsStoredWithLlamaQuantizesFallbacks) {
  at::manual_seed(7);  // make_teacher's norm weights come from torch's global generator: one teacher every run
  TempDir dir;
  const std::string wide = make_teacher(dir, true, 64, at::kFloat, /*d_model=*/256, /*d_ff=*/512);
  const std::vector<int64_t> ids = some_ids(21);
  std::map<std::string, double> rel_of;
  for (auto [type, file_type] : std::vector<std::pair<GgmlType, uint32_t>>{
           {GgmlType::kQ8_0, 7u}, {GgmlType::kQ4_K, 14u}, {GgmlType::kQ6_K, 18u}, {GgmlType::kQ5_0, 8u}}) {
    const std::string name = io::ggml_type_name(static_cast<uint32_t>(type));
    const std::string gguf = dir.file(name + ".gguf");
    run_cli("quantize " + wide + " --type " + name + " -o " + gguf);
    ASSERT_TRUE(fs::exists(gguf)) << name;
    auto f = GgufFile::open(gguf);
    EXPECT_EQ(f->tensor("blk.0.attn_q.weight").type, type);
    EXPECT_EQ(f->tensor("blk.1.ffn_down.weight").type, type);
    EXPECT_EQ(f->get_uint("general.file_type"), file_type);
    EXPECT_EQ(runtime::Model::load(gguf)->weight_dtypes(), name + "+F32");
    io::import_gguf(gguf, dir.file(name + "_f32"), at::kFloat);
    const std::vector<float> logits = runtime_logits(gguf, ids);
    // Measured max |diff| / max |logit| on this 256-wide model (seed 7): Q8_0 0.046, Q4_K 0.060, Q6_K
    // 0.047, Q5_0 0.045; 0.040-0.070 for every type, Q8_0 included, over unseeded teachers (so it is the
    // activations' rounding, not the block kernels'); 0.013-0.019 on the 32-wide one above.
    const double rel = relative_max_diff(logits, runtime_logits(dir.file(name + "_f32"), ids));
    rel_of[name] = rel;
    EXPECT_LT(rel, 0.08) << name;
    EXPECT_GT(rel, 0.0) << name;
    EXPECT_EQ(runtime_logits(gguf, ids, 3), logits) << name;
    auto m = runtime::Model::load(gguf);
    runtime::SessionOptions o;
    o.n_ctx = static_cast<int64_t>(ids.size());
    runtime::Session s(m, o);
    for (size_t t = 0; t < ids.size(); ++t) {
      const float* step = s.step(ids[t]);
      ASSERT_TRUE(std::equal(step, step + 4096, logits.begin() + t * 4096)) << name << " token " << t;
    }
  }
  // The block kernels add nothing of their own beyond the activations' rounding that Q8_0 shows.
  for (const char* name : {"Q4_K", "Q6_K", "Q5_0"}) EXPECT_LT(rel_of[name], 1.5 * rel_of["Q8_0"]) << name;
  // The small teacher's rows (32, 48 values): the fallbacks.
  const std::string small = make_teacher(dir, false, 8, at::kFloat);
  io::export_gguf(small, dir.file("small_q4_k.gguf"), GgmlType::kQ4_K);
  io::export_gguf(small, dir.file("small_q6_k.gguf"), GgmlType::kQ6_K);
  auto q4 = GgufFile::open(dir.file("small_q4_k.gguf")), q6 = GgufFile::open(dir.file("small_q6_k.gguf"));
  EXPECT_EQ(q4->tensor("blk.0.attn_q.weight").type, GgmlType::kQ5_0);
  EXPECT_EQ(q6->tensor("blk.0.attn_q.weight").type, GgmlType::kQ8_0);
  EXPECT_EQ(q4->tensor("blk.0.ffn_down.weight").type, GgmlType::kF16);
  EXPECT_EQ(runtime::Model::load(dir.file("small_q4_k.gguf"))->weight_dtypes(), "Q5_0+F32+F16");
}

TEST(GgufRuntime, AHybridRunsFromOneQuantizedFile) {
  TempDir dir;
  std::string hybrid = make_hybrid_dir(dir);
  EXPECT_RAD_ERROR(io::export_gguf(hybrid, dir.file("x.gguf"), GgmlType::kQ8_0), "llama.cpp has no architecture");
  const std::vector<int64_t> ids = some_ids(17);
  const std::vector<float> expected = runtime_logits(hybrid, ids);
  io::export_gguf(hybrid, dir.file("f32.gguf"), GgmlType::kF32, /*allow_hybrid=*/true);
  auto f = GgufFile::open(dir.file("f32.gguf"));
  EXPECT_EQ(f->get_string("general.architecture"), io::kGgufHybridArchitecture);
  EXPECT_TRUE(f->has_tensor("model.layers.1.self_attn.ssm.x_proj.weight"));
  EXPECT_EQ(f->tensor("blk.1.attn_q.weight").shape(), (std::vector<int64_t>{8, 32}));  // one kept head
  auto m = runtime::Model::load(dir.file("f32.gguf"));
  EXPECT_TRUE(m->is_hybrid());
  EXPECT_EQ(runtime_logits(dir.file("f32.gguf"), ids), expected);
  run_cli("quantize " + hybrid + " --type q8_0 -o " + dir.file("q8.gguf"));
  ASSERT_TRUE(fs::exists(dir.file("q8.gguf")));
  EXPECT_EQ(GgufFile::open(dir.file("q8.gguf"))->tensor("model.layers.0.self_attn.ssm.B_proj.weight").type,
            GgmlType::kQ8_0);
  // Against the float hybrid, the weights' rounding included (its random SSM heads carry it through the
  // recurrence): measured 0.082 of the largest logit.
  EXPECT_LT(relative_max_diff(runtime_logits(dir.file("q8.gguf"), ids), expected), 0.15);
}

TEST(GgufRuntime, RowsThatAreNotWholeBlocksAndTruncatedFilesAreRefused) {
  TempDir dir;
  std::string teacher = make_teacher(dir, true, 8, at::kFloat);
  io::export_gguf(teacher, dir.file("q.gguf"), GgmlType::kQ8_0);
  std::string bytes = read_text_file(dir.file("q.gguf"));
  // blk.0.ffn_up.weight is Q8_0 [48, 32] (ggml dims {32, 48}); as {48, 32} it holds as many whole
  // blocks (the format's own check passes) but its rows of 48 are not whole blocks.
  const std::string name = "blk.0.ffn_up.weight";
  size_t p = bytes.find(name);
  ASSERT_NE(p, std::string::npos);
  size_t dims = p + name.size() + 4;  // after the name: uint32 n_dims, then the dims
  uint64_t d0, d1;
  std::memcpy(&d0, &bytes[dims], 8);
  std::memcpy(&d1, &bytes[dims + 8], 8);
  ASSERT_EQ(d0, 32u);
  ASSERT_EQ(d1, 48u);
  std::swap(d0, d1);
  std::memcpy(&bytes[dims], &d0, 8);
  std::memcpy(&bytes[dims + 8], &d1, 8);
  write_text_atomic(dir.file("bad_rows.gguf"), bytes);
  // The format's reader refuses it already (the runtime's store checks again, for its own callers).
  EXPECT_RAD_ERROR(runtime::Model::load(dir.file("bad_rows.gguf")),
                   "tensor \"blk.0.ffn_up.weight\": row length 48 is not a multiple of the Q8_0 block size 32");
  // Truncated inside the last tensor's data.
  std::string whole = read_text_file(dir.file("q.gguf"));
  write_text_atomic(dir.file("short.gguf"), whole.substr(0, whole.size() - 100));
  EXPECT_RAD_ERROR(runtime::Model::load(dir.file("short.gguf")), "short.gguf");
  // Not a GGUF file at all.
  write_text_atomic(dir.file("text.gguf"), "hello");
  EXPECT_THROW(runtime::Model::load(dir.file("text.gguf")), rad::Error);
}

// ---------------------------------------------------------------------------------------------------
// Hostile files

// A small valid file to break: metadata of several kinds and two tensors.
std::string valid_file() {
  static std::vector<float> a(64, 1.0f);
  GgufWriter w;
  w.set("general.architecture", GgufValue::string("llama"));
  w.set("tokenizer.ggml.tokens", GgufValue::string_array({"a", "b"}));
  w.set("n", GgufValue::u32(3));
  w.add_tensor("x", GgmlType::kF32, {4, 8}, a.data(), 128);
  w.add_tensor("y", GgmlType::kF32, {32}, a.data(), 128);
  return w.to_bytes();
}

template <typename T>
void poke(std::string& s, size_t at, T v) {
  std::memcpy(&s[at], &v, sizeof(T));
}

// Offset of the first byte after `needle` (a key or name) in the header.
size_t after(const std::string& s, const std::string& needle) {
  size_t p = s.find(needle);
  EXPECT_NE(p, std::string::npos) << needle;
  return p + needle.size();
}

TEST(GgufHostile, EveryMalformedHeaderIsANamedError) {
  const std::string good = valid_file();
  ASSERT_NO_THROW(parse_bytes(good));
  {
    std::string s = good;
    s[0] = 'X';
    EXPECT_RAD_ERROR(parse_bytes(s), "mem.gguf: not a GGUF file: magic");
  }
  {
    std::string s = good;
    poke<uint32_t>(s, 4, 1);
    EXPECT_RAD_ERROR(parse_bytes(s), "GGUF version 1");
    poke<uint32_t>(s, 4, 0x03000000);
    EXPECT_RAD_ERROR(parse_bytes(s), "big-endian");
    poke<uint32_t>(s, 4, 7);
    EXPECT_RAD_ERROR(parse_bytes(s), "unsupported GGUF version 7");
  }
  {
    std::string s = good;
    poke<uint64_t>(s, 8, 1ull << 60);
    EXPECT_RAD_ERROR(parse_bytes(s), "tensor count 1152921504606846976 cannot fit");
    s = good;
    poke<uint64_t>(s, 16, ~0ull);
    EXPECT_RAD_ERROR(parse_bytes(s), "metadata count 18446744073709551615 cannot fit");
  }
  {
    std::string s = good;  // the key length of the first key
    poke<uint64_t>(s, 24, 1ull << 62);
    EXPECT_RAD_ERROR(parse_bytes(s), "truncated GGUF: metadata key #0 needs 4611686018427387904 bytes");
  }
  {
    std::string s = good;  // value type of "general.architecture"
    poke<uint32_t>(s, after(s, "general.architecture"), 13);
    EXPECT_RAD_ERROR(parse_bytes(s), "metadata \"general.architecture\" has unknown value type 13");
  }
  {
    std::string s = good;  // element count of the token array
    poke<uint64_t>(s, after(s, "tokenizer.ggml.tokens") + 8, 1ull << 40);
    EXPECT_RAD_ERROR(parse_bytes(s), "metadata \"tokenizer.ggml.tokens\": 1099511627776 elements of type string cannot fit");
    s = good;
    poke<uint32_t>(s, after(s, "tokenizer.ggml.tokens") + 4, 99);
    EXPECT_RAD_ERROR(parse_bytes(s), "unknown array element type 99");
  }
  {
    std::string s = good;  // tensor "x": n_dims, dims, type, offset follow the name
    size_t p = after(s, std::string("\x01\0\0\0\0\0\0\0x", 9));
    poke<uint32_t>(s, p, 5);
    EXPECT_RAD_ERROR(parse_bytes(s), "tensor \"x\": n_dims must be 1..4, got 5");
    s = good;
    poke<uint32_t>(s, p + 4 + 16, 31);
    EXPECT_RAD_ERROR(parse_bytes(s), "tensor \"x\": unknown or unsupported ggml type 31");
    s = good;
    poke<uint32_t>(s, p + 4 + 16, 2);  // Q4_0 needs rows that are multiples of 32
    EXPECT_RAD_ERROR(parse_bytes(s), "row length 8 is not a multiple of the Q4_0 block size 32");
    s = good;
    poke<uint64_t>(s, p + 4, 1ull << 62);
    poke<uint64_t>(s, p + 12, 1ull << 62);
    EXPECT_RAD_ERROR(parse_bytes(s), "tensor \"x\": element count overflows");
    s = good;
    poke<uint64_t>(s, p + 4 + 16 + 4, 8);
    EXPECT_RAD_ERROR(parse_bytes(s), "tensor \"x\": offset 8 is not a multiple of the alignment 32");
    s = good;
    poke<uint64_t>(s, p + 4 + 16 + 4, 1ull << 40);
    EXPECT_RAD_ERROR(parse_bytes(s), "tensor \"x\" (128 bytes at offset 1099511627776) runs past the end");
    s = good;
    poke<uint64_t>(s, p + 4 + 16 + 4, 128);  // onto "y"
    EXPECT_RAD_ERROR(parse_bytes(s), "overlap");
  }
  {
    std::string s = good;  // the data section cut short
    s.resize(s.size() - 1);
    EXPECT_RAD_ERROR(parse_bytes(s), "tensor \"y\" (128 bytes at offset 128) runs past the end of the data section (255 bytes)");
  }
  {
    GgufWriter w;
    GgufValue a = GgufValue::u32(24);
    w.set("general.alignment", a);
    EXPECT_RAD_ERROR(parse_bytes(w.to_bytes()), "\"general.alignment\" must be a power of two, got 24");
    w.set("general.alignment", GgufValue::string("32"));
    EXPECT_RAD_ERROR(parse_bytes(w.to_bytes()), "\"general.alignment\" must be uint32, got string");
  }
}

TEST(GgufHostile, EveryTruncationAndRandomCorruptionIsHandled) {
  const std::string good = valid_file();
  // Every prefix shorter than the data section's start is an error, never a crash.
  for (size_t n = 0; n < good.size() - 256; ++n) {
    std::string s = good.substr(0, n);
    EXPECT_THROW(parse_bytes(s), rad::Error) << n;
  }
  std::mt19937 rng(5);
  int errors = 0, parsed = 0;
  for (int trial = 0; trial < 3000; ++trial) {
    std::string s = good;
    for (int k = 0; k < 1 + trial % 4; ++k) s[rng() % (s.size() - 256)] = static_cast<char>(rng());
    try {
      auto f = parse_bytes(s);
      for (const auto& t : f->tensors())
        if (io::ggml_can_dequantize(t.type)) {
          std::vector<float> out(t.n_elems);
          io::dequantize(t.type, f->tensor_data(t), t.n_elems, out.data());
        }
      ++parsed;
    } catch (const rad::Error&) {
      ++errors;
    }
  }
  EXPECT_EQ(errors + parsed, 3000);
  EXPECT_GT(errors, 100);  // the corruption does reach the checks
}

TEST(GgufHostile, ImportNamesWhatIsMissingOrUnsupported) {
  TempDir dir;
  {
    GgufWriter w;
    w.set("general.architecture", GgufValue::string("gpt2"));
    w.write(dir.file("a.gguf"));
    EXPECT_RAD_ERROR(io::import_gguf(dir.file("a.gguf"), dir.file("out"), at::kFloat),
                     "general.architecture is \"gpt2\"; only \"llama\" is supported");
  }
  {
    GgufWriter w;
    w.set("general.architecture", GgufValue::string("llama"));
    w.set("llama.embedding_length", GgufValue::u32(32));
    w.write(dir.file("b.gguf"));
    EXPECT_RAD_ERROR(io::import_gguf(dir.file("b.gguf"), dir.file("out"), at::kFloat),
                     "b.gguf: missing metadata \"llama.attention.head_count\"");
  }
  EXPECT_FALSE(fs::exists(dir.file("out/config.json")));
  EXPECT_RAD_ERROR(GgufFile::open(dir.file("none.gguf")), "none.gguf: cannot open");
}

// import-gguf --dtype float16 refuses a weight float16 cannot hold instead of storing inf.
TEST(GgufHostile, ImportAsFloat16RefusesValuesBeyondItsRange) {
  TempDir dir;
  std::string teacher = make_teacher(dir, false, 8, at::kFloat);
  auto tensors = io::read_model_tensors(teacher);
  at::Tensor down = tensors.at("model.layers.1.mlp.down_proj.weight").clone();  // (read_model_tensors may map the file)
  down[0][3] = 1e5f;                                                            // > 65504
  tensors["model.layers.1.mlp.down_proj.weight"] = down;
  std::vector<std::pair<std::string, at::Tensor>> list(tensors.begin(), tensors.end());
  io::save_safetensors(teacher + "/model.safetensors", list, {{"format", "pt"}});
  io::export_gguf(teacher, dir.file("big.gguf"), GgmlType::kF32);
  EXPECT_RAD_ERROR(io::import_gguf(dir.file("big.gguf"), dir.file("half"), at::kHalf),
                   "tensor model.layers.1.mlp.down_proj.weight has values beyond float16's range");
  EXPECT_FALSE(fs::exists(dir.file("half/config.json")));
  io::import_gguf(dir.file("big.gguf"), dir.file("f32"), at::kFloat);  // float32 holds it
  EXPECT_EQ(io::read_model_tensors(dir.file("f32")).at("model.layers.1.mlp.down_proj.weight")[0][3].item<float>(), 1e5f);
}

TEST(GgufCli, ExportAndImportFromTheCommandLine) {
  TempDir dir;
  std::string teacher = make_teacher(dir, true, 8, at::kBFloat16);
  CliResult e = run_cli("export-gguf " + teacher + " " + dir.file("t.gguf") + " --dtype bf16");
  ASSERT_EQ(e.exit_code, 0) << e.err;
  CliResult i = run_cli("import-gguf " + dir.file("t.gguf") + " " + dir.file("m") + " --dtype bfloat16");
  ASSERT_EQ(i.exit_code, 0) << i.err;
  nlohmann::json config = nlohmann::json::parse(rad::read_text_file(dir.file("m/config.json")));
  EXPECT_EQ(config["torch_dtype"], "bfloat16");
  CliResult g = run_cli("generate " + dir.file("m") + " --text 'In the beginning' --max-new-tokens 3");
  EXPECT_EQ(g.exit_code, 0) << g.err;
  CliResult bad = run_cli("import-gguf " + teacher + "/config.json " + dir.file("m2"));
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.err.find("not a GGUF file"), std::string::npos) << bad.err;
}

}  // namespace
}  // namespace rad::test
