// The libtorch-free runtime (src/rad/runtime): kernels (AVX2 == portable == double reference),
// logits equal to the libtorch model on teachers, hybrids and pure SSMs (f32 within 1e-4), prefill +
// step decode == full forward, greedy tokens identical, cache bytes exact, sampling, bad input,
// and the CLI (generate --engine, bench).
#include <ATen/ATen.h>

#include <cstring>
#include <filesystem>
#include <functional>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

#include "rad/distill/init_from_attention.h"
#include "rad/io/checkpoint.h"
#include "rad/io/hybrid_checkpoint.h"
#include "rad/io/safetensors.h"
#include "rad/model/generate.h"
#include "rad/model/hybrid_mixer.h"
#include "rad/runtime/engine.h"
#include "rad/runtime/kernels.h"
#include "rad/runtime/sampler.h"
#include "test_util.h"

namespace rad::test {
namespace {
namespace fs = std::filesystem;
using runtime::Isa;

std::vector<int64_t> test_ids(int64_t n_vocab, int64_t T) {
  std::vector<int64_t> ids;
  for (int64_t t = 0; t < T; ++t) ids.push_back((t * 7 + 3) % n_vocab);
  return ids;
}

// Runtime logits of every position [T, V].
std::vector<float> runtime_logits(const std::shared_ptr<const runtime::Model>& m, const std::vector<int64_t>& ids,
                                  int threads = 1, int64_t chunk = 64) {
  runtime::SessionOptions o;
  o.n_ctx = static_cast<int64_t>(ids.size());
  o.threads = threads;
  o.prefill_chunk = chunk;
  runtime::Session s(m, o);
  std::vector<float> out(ids.size() * m->config().n_vocab);
  s.forward(ids.data(), static_cast<int64_t>(ids.size()), out.data());
  return out;
}

at::Tensor torch_logits(CausalLM& model, const std::vector<int64_t>& ids) {
  at::NoGradGuard g;
  return model->forward(at::tensor(ids, at::kLong).unsqueeze(0)).squeeze(0).contiguous();  // [T, V]
}

// A kernel test's operands: weights (rows x cols), T inputs and a bias, all drawn from N(0, 1).
struct KernelOperands {
  std::vector<float> w, x, bias;
};
KernelOperands random_operands(std::mt19937& rng, int64_t rows, int64_t cols, int64_t T) {
  std::normal_distribution<float> nd(0, 1);
  KernelOperands o{std::vector<float>(rows * cols), std::vector<float>(T * cols), std::vector<float>(rows)};
  for (auto& v : o.w) v = nd(rng);
  for (auto& v : o.x) v = nd(rng);
  for (auto& v : o.bias) v = nd(rng);
  return o;
}

// Float32 weights stored in the runtime dtype `dt`, as libtorch rounds them.
at::Tensor stored_in(const at::Tensor& w, runtime::DType dt) {
  return w.to(dt == runtime::DType::kF32 ? at::kFloat : dt == runtime::DType::kBF16 ? at::kBFloat16 : at::kHalf)
      .contiguous();
}

double max_abs_diff(const std::vector<float>& a, const at::Tensor& b) {
  at::Tensor ta = at::from_blob(const_cast<float*>(a.data()), {static_cast<int64_t>(a.size())}, at::kFloat);
  return (ta.to(at::kDouble) - b.reshape({-1}).to(at::kDouble)).abs().max().item<double>();
}

double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  double m = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) m = std::max(m, std::abs(static_cast<double>(a[i]) - b[i]));
  return m;
}

// ---- kernels ----

TEST(RuntimeKernels, MatmulMatchesADoubleReferenceForEveryDtypeAndIsa) {
  IsaGuard guard;
  std::mt19937 rng(3);
  const int64_t rows = 13, cols = 37, T = 6;  // odd sizes: row and column tails
  auto [w, x, bias] = random_operands(rng, rows, cols, T);
  at::Tensor wt = at::from_blob(w.data(), {rows, cols}, at::kFloat);
  for (runtime::DType dt : {runtime::DType::kF32, runtime::DType::kBF16, runtime::DType::kF16}) {
    at::Tensor stored = stored_in(wt, dt);
    runtime::Mat m{static_cast<const uint8_t*>(stored.data_ptr()), dt, rows, cols};
    at::Tensor ref = at::matmul(at::from_blob(x.data(), {T, cols}, at::kFloat).to(at::kDouble),
                                stored.to(at::kDouble).t()) + at::from_blob(bias.data(), {rows}, at::kFloat).to(at::kDouble);
    for (Isa isa : isas()) {
      runtime::set_isa(isa);
      for (int64_t tt : {int64_t{1}, T}) {  // the decode and prefill paths
        std::vector<float> y(tt * rows, 1.0f);
        runtime::matmul(m, bias.data(), x.data(), cols, tt, y.data(), rows, 0, rows, false);
        EXPECT_LT(max_abs_diff(y, ref.narrow(0, 0, tt)), 1e-4) << runtime::dtype_name(dt) << " " << runtime::isa_name(isa) << " T=" << tt;
        std::vector<float> acc(tt * rows, 1.0f);  // accumulate adds to what is there
        runtime::matmul(m, bias.data(), x.data(), cols, tt, acc.data(), rows, 2, rows, true);
        for (int64_t t = 0; t < tt; ++t) {
          EXPECT_EQ(acc[t * rows + 0], 1.0f);
          EXPECT_NEAR(acc[t * rows + 5], 1.0f + y[t * rows + 5], 1e-5);
        }
      }
    }
  }
}

// The decode path (T = 1: 8-row passes that prefetch the next 8 rows, 1-row tail) and the prefill
// tiles (2 rows x 4 tokens, with row and token tails) on shapes that reach every branch: rows past
// two 8-row passes and not a multiple of 8 or 4, columns below, at and past a cache line of each
// dtype and not a multiple of 8. Each against a double reference; and every (row, token) must get
// the same bits whichever path, row range or token count computed it, which batched decode in
// serve relies on (a sequence's text must not depend on its neighbours).
TEST(RuntimeKernels, DecodeAndPrefillTilesAgreeBitwiseAndMatchADoubleReference) {
  IsaGuard guard;
  std::mt19937 rng(11);
  const int64_t T = 7;  // two 3-token tiles and a 1-token tail (4 x 3 tiles), or 4 + 3 (2 x 4 tiles)
  for (auto [rows, cols] : std::vector<std::pair<int64_t, int64_t>>{{43, 37}, {35, 70}, {19, 8}, {26, 5}, {17, 135}}) {
    auto [w, x, bias] = random_operands(rng, rows, cols, T);
    at::Tensor wt = at::from_blob(w.data(), {rows, cols}, at::kFloat);
    for (runtime::DType dt : {runtime::DType::kF32, runtime::DType::kBF16, runtime::DType::kF16}) {
      at::Tensor stored = stored_in(wt, dt);
      // One byte off alignment, as tensors inside a memory-mapped safetensors file may be.
      const size_t nbytes = stored.numel() * stored.element_size();
      std::vector<uint8_t> unaligned(nbytes + 1);
      std::memcpy(unaligned.data() + 1, stored.data_ptr(), nbytes);
      runtime::Mat m{unaligned.data() + 1, dt, rows, cols};
      at::Tensor ref = at::matmul(at::from_blob(x.data(), {T, cols}, at::kFloat).to(at::kDouble), stored.to(at::kDouble).t()) +
                       at::from_blob(bias.data(), {rows}, at::kFloat).to(at::kDouble);
      for (Isa isa : isas()) {
        runtime::set_isa(isa);
        const std::string what = std::string(runtime::dtype_name(dt)) + " " + runtime::isa_name(isa) + " " +
                                 std::to_string(rows) + "x" + std::to_string(cols);
        std::vector<float> prefill(T * rows);
        runtime::matmul(m, bias.data(), x.data(), cols, T, prefill.data(), rows, 0, rows, false);
        EXPECT_LT(max_abs_diff(prefill, ref), 1e-4) << what;
        for (int64_t t = 0; t < T; ++t) {
          std::vector<float> decode(rows), split(rows);
          runtime::matmul(m, bias.data(), x.data() + t * cols, cols, 1, decode.data(), rows, 0, rows, false);
          // rows in two ranges, as two threads' blocks: a pass ends at 17, the next starts there
          runtime::matmul(m, bias.data(), x.data() + t * cols, cols, 1, split.data(), rows, 0, 17, false);
          runtime::matmul(m, bias.data(), x.data() + t * cols, cols, 1, split.data(), rows, 17, rows, false);
          EXPECT_EQ(std::memcmp(decode.data(), prefill.data() + t * rows, rows * sizeof(float)), 0) << what << " token " << t;
          EXPECT_EQ(std::memcmp(split.data(), decode.data(), rows * sizeof(float)), 0) << what << " token " << t;
        }
        // Prefill rows in two ranges (the second starting off the 4-row grid) give the same bits.
        std::vector<float> split_prefill(T * rows);
        runtime::matmul(m, bias.data(), x.data(), cols, T, split_prefill.data(), rows, 0, 17, false);
        runtime::matmul(m, bias.data(), x.data(), cols, T, split_prefill.data(), rows, 17, rows, false);
        EXPECT_EQ(std::memcmp(split_prefill.data(), prefill.data(), T * rows * sizeof(float)), 0) << what;
        // A 2-token prefill (the token tail alone) gives the same bits too.
        std::vector<float> two(2 * rows);
        runtime::matmul(m, bias.data(), x.data() + 5 * cols, cols, 2, two.data(), rows, 0, rows, false);
        EXPECT_EQ(std::memcmp(two.data(), prefill.data() + 5 * rows, 2 * rows * sizeof(float)), 0) << what;
      }
    }
  }
}

TEST(RuntimeKernels, SsmStepMatchesTheRecurrenceByHand) {
  IsaGuard guard;
  for (Isa isa : isas()) {
    runtime::set_isa(isa);
    const int64_t P = 3, N = 11;
    std::vector<float> S(P * N, 0.5f), x = {1, 2, 3}, B(N), C(N), y(P);
    for (int64_t n = 0; n < N; ++n) {
      B[n] = 0.1f * n;
      C[n] = 1.0f - 0.05f * n;
    }
    runtime::ssm_step(S.data(), P, N, 0.9f, x.data(), B.data(), C.data(), y.data());
    for (int64_t p = 0; p < P; ++p) {
      double yp = 0;
      for (int64_t n = 0; n < N; ++n) {
        double s = 0.9 * 0.5 + x[p] * B[n];
        EXPECT_NEAR(S[p * N + n], s, 1e-6);
        yp += s * C[n];
      }
      EXPECT_NEAR(y[p], yp, 1e-5) << runtime::isa_name(isa);
    }
  }
}

// ---- teachers ----

TEST(Runtime, TeacherFixturesMatchLibtorchAndTheGoldenLogits) {
  IsaGuard guard;
  for (const char* name : {"llama_gqa", "llama_tied_mha", "qwen2_bias", "llama3_rope", "llama_linear_rope", "llama_bf16",
                           "llama_fp16", "llama_sharded", "mistral_headdim"}) {
    auto golden = io::SafetensorsFile::open(fixture_model(name) + "/golden.safetensors");
    at::Tensor ids_t = golden->tensor("input_ids").to(at::kLong);
    std::vector<int64_t> ids(ids_t.data_ptr<int64_t>(), ids_t.data_ptr<int64_t>() + ids_t.numel());
    CausalLM teacher = io::load_causal_lm(fixture_model(name));
    at::Tensor expected = torch_logits(teacher, ids);
    auto m = runtime::Model::load(fixture_model(name));
    for (Isa isa : isas()) {
      runtime::set_isa(isa);
      std::vector<float> got = runtime_logits(m, ids);
      EXPECT_LT(max_abs_diff(got, expected), 1e-4) << name << " " << runtime::isa_name(isa);
      EXPECT_LT(max_abs_diff(got, golden->tensor("logits")), 1e-4) << name << " " << runtime::isa_name(isa);
    }
  }
}

TEST(Runtime, ThreadsAndPrefillChunksDoNotChangeTheNumbers) {
  auto m = runtime::Model::load(fixture_model("mistral_headdim"));  // sliding window 5 < T
  std::vector<int64_t> ids = test_ids(m->config().n_vocab, 23);
  std::vector<float> one = runtime_logits(m, ids, 1, 64);
  EXPECT_EQ(max_abs_diff(runtime_logits(m, ids, 3, 64), one), 0.0);  // rows split differently, same sums
  EXPECT_LT(max_abs_diff(runtime_logits(m, ids, 2, 4), one), 1e-5);   // chunks of 4 across the window
}

// ---- hybrids ----

HybridConfig hybrid_config(const ModelConfig& base, std::vector<std::pair<int64_t, int64_t>> kept, int64_t d_state,
                           bool conv, bool gate, bool bias) {
  HybridConfig hc;
  hc.base = base;
  hc.plan.kept_heads = std::move(kept);
  hc.ssm.d_state = d_state;
  hc.ssm.conv = conv;
  hc.ssm.gate = gate;
  hc.ssm.bias = bias;
  hc.ssm.chunk_size = 3;
  return hc;
}

struct HybridCase {
  const char* fixture;
  std::vector<std::pair<int64_t, int64_t>> kept;
  bool conv, gate, bias;
  const char* what;
};

std::vector<HybridCase> hybrid_cases() {
  return {
      {"llama_gqa", {}, false, false, false, "pure SSM"},
      {"llama_gqa", {}, true, true, true, "pure SSM, conv + gate + bias"},
      {"llama_gqa", {{0, 0}, {0, 1}, {0, 3}, {1, 2}}, true, true, false, "hybrid, uneven KV groups"},
      {"qwen2_bias", {{0, 1}, {1, 0}}, false, true, true, "hybrid, qkv biases"},
      {"mistral_headdim", {{0, 0}, {1, 3}}, true, false, false, "hybrid, sliding window"},
      {"llama_bf16", {{1, 1}}, false, false, false, "hybrid, bf16 weights"},
  };
}

// Converts the fixture teacher, randomises every SSM parameter (so that biases, D, conv taps and
// gates all matter) and saves it; returns the libtorch model as loaded back from disk.
CausalLM make_hybrid(const HybridCase& hc_case, const std::string& dir, HybridConfig* out_config) {
  CausalLM teacher = io::load_causal_lm(fixture_model(hc_case.fixture));
  HybridConfig hc = hybrid_config(teacher->config(), hc_case.kept, 4, hc_case.conv, hc_case.gate, hc_case.bias);
  CausalLM hybrid = convert_from_teacher(teacher, hc, SsmInit::kRandom, 11);
  {
    at::NoGradGuard g;
    at::manual_seed(5);
    for (auto& item : hybrid->named_parameters())
      if (item.key().find(".ssm.") != std::string::npos) item.value().add_(at::randn_like(item.value()) * 0.3);
  }
  // Stored in the fixture's dtype (llama_bf16: bf16 tensors); libtorch loads them back as float32.
  hybrid->to(io::parse_dtype(teacher->config().torch_dtype));
  io::save_hybrid(hybrid, hc, dir);
  *out_config = hc;
  return io::load_hybrid(dir).model;
}

TEST(Runtime, HybridsAndPureSsmMatchLibtorch) {
  IsaGuard guard;
  for (const auto& hcase : hybrid_cases()) {
    TempDir dir;
    HybridConfig hc;
    CausalLM hybrid = make_hybrid(hcase, dir.path(), &hc);
    auto m = runtime::Model::load(dir.path());
    ASSERT_TRUE(m->is_hybrid());
    if (std::string(hcase.fixture) == "llama_bf16") {
      EXPECT_EQ(m->weight_dtypes(), "BF16");  // used as stored
    }
    std::vector<int64_t> ids = test_ids(hc.base.n_vocab, 14);
    at::Tensor expected = torch_logits(hybrid, ids);
    for (Isa isa : isas()) {
      runtime::set_isa(isa);
      EXPECT_LT(max_abs_diff(runtime_logits(m, ids, 2), expected), 1e-4) << hcase.what << " " << runtime::isa_name(isa);
    }
  }
}

TEST(Runtime, PrefillPlusStepDecodeEqualsTheFullForward) {
  std::vector<HybridCase> cases = hybrid_cases();
  cases.push_back({"llama_gqa", {{-1, -1}}, false, false, false, "teacher"});
  for (const auto& hcase : cases) {
    TempDir dir;
    std::string model_dir = fixture_model(hcase.fixture);
    if (hcase.kept.empty() || hcase.kept[0].first >= 0) {
      HybridConfig hc;
      make_hybrid(hcase, dir.path(), &hc);
      model_dir = dir.path();
    }
    auto m = runtime::Model::load(model_dir);
    const int64_t V = m->config().n_vocab, T = 14;
    std::vector<int64_t> ids = test_ids(V, T);
    std::vector<float> full = runtime_logits(m, ids);
    runtime::SessionOptions o;
    o.n_ctx = T;
    o.prefill_chunk = 3;  // the 5- and 4-token prefills run in chunks, continuing the caches
    runtime::Session s(m, o);
    std::vector<float> pieces(T * V);
    s.forward(ids.data(), 5, pieces.data());
    s.forward(ids.data() + 5, 4, pieces.data() + 5 * V);
    for (int64_t t = 9; t < T; ++t) {
      const float* l = s.step(ids[t]);
      std::copy(l, l + V, pieces.begin() + t * V);
    }
    EXPECT_EQ(s.length(), T);
    EXPECT_LT(max_abs_diff(pieces, full), 1e-5) << hcase.what;
    // reset() starts a new sequence: the same logits again.
    s.reset();
    std::vector<float> again(T * V);
    s.forward(ids.data(), T, again.data());
    EXPECT_LT(max_abs_diff(again, full), 1e-5) << hcase.what;
  }
}

TEST(Runtime, GreedyTokensAreTheLibtorchTokens) {
  std::vector<HybridCase> cases = {hybrid_cases()[2], hybrid_cases()[0]};
  for (const auto& hcase : cases) {
    TempDir dir;
    HybridConfig hc;
    CausalLM hybrid = make_hybrid(hcase, dir.path(), &hc);
    CausalLM teacher = io::load_causal_lm(fixture_model(hcase.fixture));
    for (auto* pair : {&hybrid, &teacher}) {
      std::string model_dir = pair == &hybrid ? dir.path() : fixture_model(hcase.fixture);
      std::vector<int64_t> prompt = {1, 5, 9, 2};
      GenerateOptions to;
      to.max_new_tokens = 20;
      to.stop_at_eos = false;
      std::vector<int64_t> expected = generate_greedy(*pair, prompt, to).tokens;
      auto m = runtime::Model::load(model_dir);
      runtime::SessionOptions so;
      so.n_ctx = 24;
      runtime::Session s(m, so);
      runtime::GenerateOptions ro;
      ro.max_new_tokens = 20;
      ro.stop_at_eos = false;
      runtime::GenerateResult r = runtime::generate(s, prompt, ro);
      EXPECT_EQ(r.tokens, expected) << hcase.what << " " << model_dir;
      EXPECT_EQ(r.stop_reason, "length");
    }
  }
}

// Continuous batching: BatchDecoder::step over sessions at different lengths (and contexts, so
// different ring sizes under a sliding window) gives each session the logits of its own step(),
// while sessions join, leave and change places in the batch between steps.
TEST(Runtime, BatchedDecodeEqualsEachSessionsOwnStep) {
  IsaGuard guard;
  struct Case {
    std::string what, dir;
  };
  std::vector<HybridCase> cases = hybrid_cases();
  std::vector<std::unique_ptr<TempDir>> dirs;
  std::vector<Case> models = {{"teacher llama_gqa", fixture_model("llama_gqa")},
                               {"teacher mistral_headdim (window 5)", fixture_model("mistral_headdim")},
                               {"teacher qwen2_bias", fixture_model("qwen2_bias")},
                               {"teacher llama_bf16", fixture_model("llama_bf16")}};
  for (const auto& hcase : cases) {
    dirs.push_back(std::make_unique<TempDir>());
    HybridConfig hc;
    make_hybrid(hcase, dirs.back()->path(), &hc);
    models.push_back({hcase.what, dirs.back()->path()});
  }
  const std::vector<int64_t> prompt_len = {1, 3, 7, 12};  // past the window of 5, and not
  const int64_t n_sessions = static_cast<int64_t>(prompt_len.size()), n_steps = 6;
  // Which sessions step at each step, in which order: all, some, one, a newcomer, reversed.
  const std::vector<std::vector<int64_t>> schedule = {{0, 1, 2, 3}, {2, 0}, {3}, {1, 3, 0, 2}, {3, 2, 1, 0}, {0, 2}};
  double worst = 0;
  for (const auto& model : models) {
    auto m = runtime::Model::load(model.dir);
    const int64_t V = m->config().n_vocab;
    for (Isa isa : isas()) {
      runtime::set_isa(isa);
      for (int threads : {1, 2}) {
        std::vector<std::unique_ptr<runtime::Session>> solo, batched;
        for (int64_t i = 0; i < n_sessions; ++i) {
          runtime::SessionOptions so;
          so.n_ctx = prompt_len[i] + n_steps + i;  // each its own context (and ring, with a window)
          so.threads = 1;
          solo.push_back(std::make_unique<runtime::Session>(m, so));
          batched.push_back(std::make_unique<runtime::Session>(m, so));
          std::vector<int64_t> ids = test_ids(V, prompt_len[i] + i);
          ids.erase(ids.begin(), ids.begin() + i);  // different prompts too
          solo.back()->forward(ids.data(), prompt_len[i]);
          batched.back()->forward(ids.data(), prompt_len[i]);
        }
        runtime::BatchDecoderOptions bo;
        bo.threads = threads;
        runtime::BatchDecoder dec(m, bo);
        int64_t compared = 0;
        for (size_t k = 0; k < schedule.size(); ++k) {
          std::vector<runtime::Session*> ss;
          std::vector<int64_t> tokens;
          for (int64_t i : schedule[k]) {
            ss.push_back(batched[i].get());
            tokens.push_back((k * 5 + i * 11 + 2) % V);
          }
          const float* logits = dec.step(ss.data(), tokens.data(), static_cast<int64_t>(ss.size()));
          for (size_t b = 0; b < ss.size(); ++b) {
            const int64_t i = schedule[k][b];
            const float* ref = solo[i]->step(tokens[b]);
            std::vector<float> got(logits + b * V, logits + (b + 1) * V), want(ref, ref + V);
            const double diff = max_abs_diff(got, want);
            worst = std::max(worst, diff);
            ++compared;
            EXPECT_LT(diff, 1e-5) << model.what << " " << runtime::isa_name(isa) << " threads " << threads << " step "
                                  << k << " session " << i << " at length " << solo[i]->length() - 1;
            EXPECT_EQ(batched[i]->length(), solo[i]->length());
          }
        }
        EXPECT_EQ(compared, 17);
        // A session stepped alone after batched steps continues from the same caches.
        for (int64_t i = 0; i < n_sessions; ++i) {
          if (batched[i]->length() >= batched[i]->n_ctx()) continue;
          const float* a = batched[i]->step(1);
          std::vector<float> got(a, a + V);
          const float* b = solo[i]->step(1);
          EXPECT_LT(max_abs_diff(got, std::vector<float>(b, b + V)), 1e-5) << model.what << " session " << i;
        }
      }
    }
  }
  RecordProperty("max_abs_diff", std::to_string(worst));  // 0 here: the same kernels in the same order
}

TEST(Runtime, BatchedDecodeRefusesBadBatchesAndChangesNothing) {
  auto m = runtime::Model::load(fixture_model("llama_gqa"));
  auto other = runtime::Model::load(fixture_model("llama_tied_mha"));
  runtime::SessionOptions so;
  so.n_ctx = 4;
  runtime::Session a(m, so), b(m, so), full(m, so), foreign(other, so);
  std::vector<int64_t> ids = test_ids(m->config().n_vocab, 4);
  a.forward(ids.data(), 2);
  b.forward(ids.data(), 1);
  full.forward(ids.data(), 4);
  foreign.forward(ids.data(), 1);
  runtime::BatchDecoder dec(m, {});
  auto refused = [&](std::vector<runtime::Session*> ss, std::vector<int64_t> tokens, const std::string& message) {
    EXPECT_RAD_ERROR(dec.step(ss.data(), tokens.data(), static_cast<int64_t>(ss.size())), message);
    EXPECT_EQ(a.length(), 2);  // a refused batch leaves every session as it was
    EXPECT_EQ(b.length(), 1);
  };
  refused({&a, &b, &a}, {1, 2, 3}, "batch entries 0 and 2 are the same session");
  refused({&a, &full}, {1, 2}, "batch entry 1: 1 new token after 4 cached ones exceeds the context of 4 tokens");
  refused({&a, &b}, {1, m->config().n_vocab}, "batch entry 1: token id 64 is outside the vocabulary");
  refused({&a, &b}, {-1, 1}, "batch entry 0: token id -1 is outside the vocabulary");
  refused({&b, &foreign}, {1, 1}, "batch entry 1 is a session of another model");
  refused({}, {}, "needs at least one session");
  refused({&a, nullptr}, {1, 1}, "batch entry 1 has no session");
  // The same batch without the bad entries runs, and equals the sessions' own steps.
  runtime::Session a2(m, so), b2(m, so);
  a2.forward(ids.data(), 2);
  b2.forward(ids.data(), 1);
  std::vector<runtime::Session*> ok = {&b, &a};
  std::vector<int64_t> tokens = {5, 6};
  const float* logits = dec.step(ok.data(), tokens.data(), 2);
  const int64_t V = m->config().n_vocab;
  const float* rb = b2.step(5);
  EXPECT_LT(max_abs_diff(std::vector<float>(logits, logits + V), std::vector<float>(rb, rb + V)), 1e-5);
  const float* ra = a2.step(6);
  EXPECT_LT(max_abs_diff(std::vector<float>(logits + V, logits + 2 * V), std::vector<float>(ra, ra + V)), 1e-5);
  EXPECT_EQ(a.length(), 3);
  EXPECT_EQ(b.length(), 2);
  EXPECT_GE(dec.capacity(), 2);
}

TEST(Runtime, CacheBytesAreExactAndOnlyForKeptGroups) {
  // Hybrid: kept KV groups x positions + the SSM and conv states, as docs/DESIGN.md section 7 and the
  // libtorch cache count them.
  HybridCase hcase = hybrid_cases()[2];  // layer 0 keeps groups {0, 1}, layer 1 group {1}; conv
  TempDir dir;
  HybridConfig hc;
  CausalLM hybrid = make_hybrid(hcase, dir.path(), &hc);
  auto m = runtime::Model::load(dir.path());
  runtime::SessionOptions so;
  so.n_ctx = 32;
  runtime::Session s(m, so);
  std::vector<int64_t> ids = test_ids(hc.base.n_vocab, 11);
  s.forward(ids.data(), 11);
  const int64_t expected = 11 * hc.kv_bytes_per_token(4) + hc.ssm_state_bytes();
  EXPECT_EQ(s.cache_bytes().used(), expected);
  EXPECT_EQ(m->cache_bytes(11), expected);
  EXPECT_EQ(s.cache_bytes().kv_allocated, 32 * hc.kv_bytes_per_token(4));
  EXPECT_EQ(s.cache_bytes().kv_allocated, (2 + 1) * 2 * 8 * 32 * 4);
  at::NoGradGuard g;
  DecodeCache tc = hybrid->new_cache();
  hybrid->forward(at::tensor(ids, at::kLong).unsqueeze(0), &tc);
  EXPECT_EQ(s.cache_bytes().used(), tc.bytes());

  // Pure SSM: no KV at all, a fixed state.
  TempDir dir2;
  HybridConfig hc2;
  make_hybrid(hybrid_cases()[1], dir2.path(), &hc2);
  auto m2 = runtime::Model::load(dir2.path());
  runtime::Session s2(m2, so);
  EXPECT_EQ(s2.cache_bytes().kv_allocated, 0);
  s2.forward(ids.data(), 11);
  EXPECT_EQ(s2.cache_bytes().used(), hc2.ssm_state_bytes());
  EXPECT_GT(hc2.ssm_state_bytes(), 0);

  // Sliding window 5: the KV ring holds 5 positions, however long the sequence.
  auto mw = runtime::Model::load(fixture_model("mistral_headdim"));
  runtime::Session sw(mw, so);
  sw.forward(ids.data(), 11);
  const int64_t per_token = mw->config().kv_cache_bytes_per_token(4);
  EXPECT_EQ(sw.cache_bytes().kv_allocated, 5 * per_token);
  EXPECT_EQ(sw.cache_bytes().used(), 5 * per_token);
}

// ---- f16 K/V cache ----

// The portable float -> half conversion is IEEE round-to-nearest-even: the same bits as F16C's
// _mm256_cvtps_ph on a sweep of float bit patterns (normals, subnormals, overflow, ties), exact
// on every value a half represents, and the ties by hand.
TEST(RuntimeKernels, F16ConversionRoundsToNearestEvenOnBothPaths) {
  IsaGuard guard;
  using runtime::f16_to_f32;
  using runtime::f32_to_f16;
  int64_t nan = 0;
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = f16_to_f32(static_cast<uint16_t>(h));
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(f16_to_f32(f32_to_f16(f))));
      ++nan;
      continue;
    }
    ASSERT_EQ(f32_to_f16(f), h) << "half " << h << " = " << f;  // exact for every half
  }
  EXPECT_EQ(nan, 2 * 1023);
  auto bits = [](uint32_t b) {
    float f;
    std::memcpy(&f, &b, 4);
    return f;
  };
  const float tiny = std::ldexp(1.0f, -25);  // half of the smallest subnormal half
  EXPECT_EQ(f32_to_f16(1.0f + std::ldexp(1.0f, -11)), 0x3c00);      // tie: down to the even 1.0
  EXPECT_EQ(f32_to_f16(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3c02);  // tie: up to the even mantissa
  EXPECT_EQ(f32_to_f16(1.0f + std::ldexp(1.0f, -11) + std::ldexp(1.0f, -20)), 0x3c01);  // above the tie
  EXPECT_EQ(f32_to_f16(65504.0f), 0x7bff);
  EXPECT_EQ(f32_to_f16(65519.0f), 0x7bff);
  EXPECT_EQ(f32_to_f16(65520.0f), 0x7c00);  // the tie above the largest half goes to infinity
  EXPECT_EQ(f32_to_f16(-1e9f), 0xfc00);
  EXPECT_EQ(f32_to_f16(tiny), 0x0000);                      // tie: to even zero
  EXPECT_EQ(f32_to_f16(std::nextafter(tiny, 1.0f)), 0x0001);
  EXPECT_EQ(f32_to_f16(3 * tiny), 0x0002);                  // tie between 1 and 2 units: even 2
  EXPECT_EQ(f32_to_f16(-std::ldexp(1.0f, -14)), 0x8400);    // smallest normal
  EXPECT_EQ(f32_to_f16(std::ldexp(1023.5f, -24)), 0x0400);  // tie at the top subnormal: carries to normal
  // A sweep of bit patterns (every 1021st; all signs and exponents): row conversions on both kernel
  // sets equal the scalar one (the AVX2 row is the hardware's cvtps_ph); NaN stays NaN.
  std::vector<float> src;
  for (uint64_t b = 0; b <= 0xffffffffull; b += 1021) src.push_back(bits(static_cast<uint32_t>(b)));
  for (float f : {65520.0f, 65519.996f, tiny, 3 * tiny, std::ldexp(1023.5f, -24), 1.0f + std::ldexp(1.0f, -11)})
    for (float sgn : {1.0f, -1.0f}) src.push_back(sgn * f);
  const int64_t n = static_cast<int64_t>(src.size());
  std::vector<uint16_t> scalar(n), row(n);
  for (int64_t i = 0; i < n; ++i) scalar[i] = f32_to_f16(src[i]);
  for (Isa isa : isas()) {
    runtime::set_isa(isa);
    runtime::f32_to_f16(src.data(), row.data(), n);
    std::vector<float> rounded = src;
    runtime::round_to_f16(rounded.data(), n);
    int64_t mismatches = 0;
    for (int64_t i = 0; i < n; ++i) {
      if (std::isnan(src[i])) {
        mismatches += !std::isnan(f16_to_f32(row[i])) || !std::isnan(rounded[i]);
        continue;
      }
      const float back = f16_to_f32(scalar[i]);
      if (row[i] != scalar[i] || std::memcmp(&rounded[i], &back, 4) != 0) {
        if (mismatches < 5) ADD_FAILURE() << runtime::isa_name(isa) << ": " << src[i] << " -> " << row[i] << " vs " << scalar[i];
        ++mismatches;
      }
    }
    EXPECT_EQ(mismatches, 0) << runtime::isa_name(isa) << " over " << n << " floats";
  }
}

// Attention over an f16 K/V run gives bitwise the results of the float kernels on the same
// values as floats (one order of operations), on both kernel sets; the two sets agree within
// float rounding.
TEST(RuntimeKernels, F16AttentionEqualsFloatAttentionOnTheRoundedValues) {
  IsaGuard guard;
  std::mt19937 rng(3);
  std::normal_distribution<float> nd(0.0f, 1.5f);
  for (int64_t Dh : {8, 12, 16, 64, 72}) {
    for (int64_t n : {1, 3, 4, 9, 33}) {
      const int64_t ld = Dh + 8;
      std::vector<float> q(Dh), Kr(n * ld), Vr(n * ld), p(n), init(Dh);
      std::vector<uint16_t> Kh(n * ld), Vh(n * ld);
      for (auto& x : q) x = nd(rng);
      for (auto& x : p) x = std::abs(nd(rng));
      for (auto& x : init) x = nd(rng);
      for (int64_t i = 0; i < n * ld; ++i) {
        Kh[i] = runtime::f32_to_f16(nd(rng));
        Vh[i] = runtime::f32_to_f16(nd(rng));
        Kr[i] = runtime::f16_to_f32(Kh[i]);
        Vr[i] = runtime::f16_to_f32(Vh[i]);
      }
      std::vector<std::vector<float>> per_isa;
      for (Isa isa : isas()) {
        runtime::set_isa(isa);
        std::vector<float> s16(n), s32(n), o16 = init, o32 = init;
        runtime::attn_scores_f16(q.data(), Kh.data(), ld, n, Dh, 3.0f, s16.data());
        runtime::attn_scores(q.data(), Kr.data(), ld, n, Dh, 3.0f, s32.data());
        runtime::weighted_sum_f16(p.data(), Vh.data(), ld, n, Dh, o16.data());
        runtime::weighted_sum(p.data(), Vr.data(), ld, n, Dh, o32.data());
        EXPECT_EQ(s16, s32) << runtime::isa_name(isa) << " Dh " << Dh << " n " << n;
        EXPECT_EQ(o16, o32) << runtime::isa_name(isa) << " Dh " << Dh << " n " << n;
        // And against a double reference on the half values.
        for (int64_t j = 0; j < n; ++j) {
          double ref = 0;
          for (int64_t i = 0; i < Dh; ++i) ref += static_cast<double>(q[i]) * Kr[j * ld + i];
          EXPECT_NEAR(s16[j], ref / 3.0, 1e-4 * (1 + std::abs(ref)));
        }
        s16.insert(s16.end(), o16.begin(), o16.end());
        per_isa.push_back(s16);
      }
      if (per_isa.size() == 2) {
        for (size_t i = 0; i < per_isa[0].size(); ++i)
          EXPECT_NEAR(per_isa[0][i], per_isa[1][i], 1e-5 * (1 + std::abs(per_isa[0][i]))) << "Dh " << Dh << " n " << n;
      }
    }
  }
}

struct KvRunResult {
  std::vector<float> logits;  // [T, V]: a chunked prefill, then step decode
  runtime::CacheBytes bytes;
};

// Prefill of the first `n_prefill` ids in chunks of 3, then step decode of the rest.
KvRunResult run_with_cache(const std::shared_ptr<const runtime::Model>& m, const std::vector<int64_t>& ids,
                           int64_t n_prefill, runtime::CacheType ct, int64_t chunk = 3) {
  const int64_t V = m->config().n_vocab, T = static_cast<int64_t>(ids.size());
  runtime::SessionOptions o;
  o.n_ctx = T;
  o.prefill_chunk = chunk;
  o.threads = 1;
  o.cache_type = ct;
  runtime::Session s(m, o);
  EXPECT_EQ(s.cache_type(), ct);
  KvRunResult r;
  r.logits.resize(T * V);
  s.forward(ids.data(), n_prefill, r.logits.data());
  for (int64_t t = n_prefill; t < T; ++t) {
    const float* l = s.step(ids[t]);
    std::copy(l, l + V, r.logits.begin() + t * V);
  }
  r.bytes = s.cache_bytes();
  return r;
}

double max_abs(const std::vector<float>& a) {
  double m = 0;
  for (float x : a) m = std::max(m, static_cast<double>(std::abs(x)));
  return m;
}

// An f16 K/V cache (llama.cpp's default): K/V rounded to half once, attention reading halves.
// Half has an 11-bit significand, so each key/value carries a relative error of at most
// 2^-11 = 4.9e-4; attention is a convex combination of values and a softmax over q.k/sqrt(Dh),
// so a layer's output moves by about that relative amount, and a few layers of residual stream
// keep it of that order relative to the logits' scale. The bound allowed: 4 * 2^-11 of the largest
// |logit| (measured: see the recorded property). Everything else holds exactly as for f32:
// chunked prefill + steps = one-pass prefill, batched = solo steps, and the K/V bytes halve.
TEST(Runtime, AnF16KvCacheStaysWithinHalfPrecisionOfF32AndHalvesTheKvBytes) {
  IsaGuard guard;
  struct Case {
    std::string what, dir;
  };
  std::vector<std::unique_ptr<TempDir>> dirs;
  std::vector<Case> models = {{"default-teacher", source_dir() + "/models/default-teacher"},
                               {"teacher llama_gqa", fixture_model("llama_gqa")},
                               {"teacher mistral_headdim (window 5)", fixture_model("mistral_headdim")},
                               {"teacher qwen2_bias", fixture_model("qwen2_bias")},
                               {"teacher llama_bf16", fixture_model("llama_bf16")}};
  for (int i : {1, 2, 4}) {  // pure SSM (no K/V at all), uneven KV groups, sliding window
    dirs.push_back(std::make_unique<TempDir>());
    HybridConfig hc;
    make_hybrid(hybrid_cases()[i], dirs.back()->path(), &hc);
    models.push_back({hybrid_cases()[i].what, dirs.back()->path()});
  }
  const double f16_eps = std::ldexp(1.0, -11);
  double worst_rel = 0;
  for (const auto& model : models) {
    auto m = runtime::Model::load(model.dir);
    const int64_t V = m->config().n_vocab, T = 16;
    std::vector<int64_t> ids = test_ids(V, T);
    std::vector<std::vector<float>> f16_by_isa;
    for (Isa isa : isas()) {
      runtime::set_isa(isa);
      KvRunResult a = run_with_cache(m, ids, 9, runtime::CacheType::kF32);
      KvRunResult h = run_with_cache(m, ids, 9, runtime::CacheType::kF16);
      const double scale = max_abs(a.logits), diff = max_abs_diff(h.logits, a.logits);
      const bool has_kv = a.bytes.kv_allocated > 0;
      if (has_kv) {
        EXPECT_GT(diff, 0.0) << model.what << ": the f16 cache changed nothing";
        worst_rel = std::max(worst_rel, diff / scale);
      } else {
        EXPECT_EQ(diff, 0.0) << model.what;  // no K/V: the cache type changes nothing
      }
      EXPECT_LT(diff, 4 * f16_eps * scale) << model.what << " " << runtime::isa_name(isa) << " scale " << scale;
      // Chunked prefill + steps equals one pass over the prompt with the f16 cache too (the
      // chunk's own K/V are rounded before attention, as the ring holds them).
      KvRunResult one = run_with_cache(m, ids, T, runtime::CacheType::kF16, 64);
      EXPECT_LT(max_abs_diff(h.logits, one.logits), 1e-5) << model.what << " " << runtime::isa_name(isa);
      // Bytes: the K/V part exactly half, the SSM/conv state unchanged; Model::cache_bytes agrees.
      EXPECT_EQ(h.bytes.kv_allocated * 2, a.bytes.kv_allocated) << model.what;
      EXPECT_EQ(h.bytes.kv_used * 2, a.bytes.kv_used) << model.what;
      EXPECT_EQ(h.bytes.ssm, a.bytes.ssm) << model.what;
      EXPECT_EQ(m->cache_bytes(T, runtime::CacheType::kF16), h.bytes.used()) << model.what;
      EXPECT_EQ(m->cache_bytes(T, runtime::CacheType::kF32), a.bytes.used()) << model.what;
      f16_by_isa.push_back(h.logits);
    }
    if (f16_by_isa.size() == 2)  // portable and AVX2 kernels on the f16 cache: float rounding only
      EXPECT_LT(max_abs_diff(f16_by_isa[0], f16_by_isa[1]), 1e-5 * max_abs(f16_by_isa[0])) << model.what;
  }
  EXPECT_GT(worst_rel, 0.0);
  RecordProperty("worst_logit_diff_over_scale", std::to_string(worst_rel));
  std::printf("f16 K/V cache: worst max|dlogit| / max|logit| = %.3g (2^-11 = %.3g)\n", worst_rel, f16_eps);
}

// Greedy generation on the default teacher: the f16 cache gives the f32 cache's tokens for as long
// as each step's top-1 margin (f32) exceeds twice the logit change the f16 cache causes there
// (measured on the f32 tokens, teacher-forced), and that holds for a short generation here.
// (On this repetitive continuation the margin later drops below the change and the two part.)
TEST(Runtime, AnF16KvCacheKeepsTheGreedyTokensOfTheDefaultTeacher) {
  auto m = runtime::Model::load(source_dir() + "/models/default-teacher");
  const int64_t V = m->config().n_vocab, n_new = 40;
  std::vector<int64_t> prompt = {4094, 17, 230, 1021, 88, 9, 512, 33};
  auto session = [&](runtime::CacheType ct) {
    runtime::SessionOptions o;
    o.n_ctx = 64;
    o.threads = 1;
    o.cache_type = ct;
    return std::make_unique<runtime::Session>(m, o);
  };
  // Free-running greedy with either cache; the f16 cache also teacher-forced on the f32 tokens.
  auto s32 = session(runtime::CacheType::kF32), s16 = session(runtime::CacheType::kF16),
       forced = session(runtime::CacheType::kF16);
  const int64_t P = static_cast<int64_t>(prompt.size());
  const float* l32 = s32->forward(prompt.data(), P);
  const float* l16 = s16->forward(prompt.data(), P);
  const float* lf = forced->forward(prompt.data(), P);
  std::vector<int64_t> t32, t16;
  int64_t agree_until = n_new;  // the first step whose margin does not allow comparing tokens
  for (int64_t i = 0; i < n_new; ++i) {
    std::vector<float> a(l32, l32 + V), f(lf, lf + V);
    const double diff = max_abs_diff(a, f);
    t32.push_back(std::max_element(a.begin(), a.end()) - a.begin());
    t16.push_back(std::max_element(l16, l16 + V) - l16);
    std::nth_element(a.begin(), a.begin() + 1, a.end(), std::greater<float>());
    if (agree_until == n_new && a[0] - a[1] <= 2 * diff) agree_until = i;
    EXPECT_LT(diff, 4 * std::ldexp(1.0, -11) * max_abs(std::vector<float>(l32, l32 + V))) << "step " << i;
    if (i + 1 < n_new) {
      l32 = s32->step(t32.back());
      l16 = s16->step(t16.back());
      lf = forced->step(t32.back());
    }
  }
  std::printf("greedy f32 vs f16 K/V: the margin allows comparing the first %lld of %lld tokens\n",
              static_cast<long long>(agree_until), static_cast<long long>(n_new));
  ASSERT_GE(agree_until, 12);  // a short generation is comparable
  EXPECT_EQ(std::vector<int64_t>(t16.begin(), t16.begin() + agree_until),
            std::vector<int64_t>(t32.begin(), t32.begin() + agree_until));
}

// BatchDecoder steps f16 sessions (alone or mixed with f32 ones) exactly as their own step().
TEST(Runtime, BatchedDecodeWithF16CachesEqualsEachSessionsOwnStep) {
  IsaGuard guard;
  TempDir dir;
  HybridConfig hc;
  make_hybrid(hybrid_cases()[4], dir.path(), &hc);  // hybrid with a sliding window of 5
  for (const std::string& model_dir : {fixture_model("llama_gqa"), dir.path()}) {
    auto m = runtime::Model::load(model_dir);
    const int64_t V = m->config().n_vocab;
    for (Isa isa : isas()) {
      runtime::set_isa(isa);
      std::vector<std::unique_ptr<runtime::Session>> solo, batched;
      const std::vector<runtime::CacheType> types = {runtime::CacheType::kF16, runtime::CacheType::kF32,
                                                     runtime::CacheType::kF16};
      for (size_t i = 0; i < types.size(); ++i) {
        runtime::SessionOptions so;
        so.n_ctx = 20;
        so.threads = 1;
        so.cache_type = types[i];
        solo.push_back(std::make_unique<runtime::Session>(m, so));
        batched.push_back(std::make_unique<runtime::Session>(m, so));
        std::vector<int64_t> ids = test_ids(V, 3 + 4 * i);
        solo.back()->forward(ids.data(), static_cast<int64_t>(ids.size()));
        batched.back()->forward(ids.data(), static_cast<int64_t>(ids.size()));
      }
      runtime::BatchDecoder dec(m, {1});
      for (int64_t k = 0; k < 6; ++k) {
        std::vector<runtime::Session*> ss = {batched[0].get(), batched[1].get(), batched[2].get()};
        std::vector<int64_t> tok = {(k * 5 + 1) % V, (k * 3 + 2) % V, (k * 7 + 4) % V};
        const float* logits = dec.step(ss.data(), tok.data(), 3);
        for (int64_t b = 0; b < 3; ++b) {
          const float* ref = solo[b]->step(tok[b]);
          EXPECT_LT(max_abs_diff(std::vector<float>(logits + b * V, logits + (b + 1) * V), std::vector<float>(ref, ref + V)),
                    1e-5)
              << model_dir << " " << runtime::isa_name(isa) << " step " << k << " session " << b;
        }
      }
      EXPECT_EQ(batched[0]->cache_bytes().kv_allocated * 2, batched[1]->cache_bytes().kv_allocated);
    }
  }
}

// ---- sampling ----

TEST(RuntimeSampler, GreedyTopKTopPSeedAndRepetitionPenalty) {
  std::vector<float> logits = {1.0f, 3.0f, 2.9f, -1.0f};
  auto pick = [&](runtime::SamplingOptions o, const std::vector<int64_t>& history = {}) {
    std::vector<float> l = logits;
    return runtime::Sampler(o, 4).sample(l.data(), history);
  };
  runtime::SamplingOptions greedy;
  EXPECT_EQ(pick(greedy), 1);
  runtime::SamplingOptions pen;
  pen.repetition_penalty = 1.5f;  // 3.0 / 1.5 = 2.0 < 2.9
  EXPECT_EQ(pick(pen, {1, 1}), 2);
  EXPECT_EQ(pick(pen, {3}), 1);  // a penalty on another token changes nothing
  runtime::SamplingOptions k1;
  k1.temperature = 5.0f;
  k1.top_k = 1;
  for (uint64_t seed = 0; seed < 20; ++seed) {
    k1.seed = seed;
    EXPECT_EQ(pick(k1), 1);
  }
  runtime::SamplingOptions p;
  p.temperature = 1.0f;
  p.top_p = 0.3f;  // the top token alone has p ~ 0.5 >= 0.3
  for (uint64_t seed = 0; seed < 20; ++seed) {
    p.seed = seed;
    EXPECT_EQ(pick(p), 1);
  }
  // Temperature 1: frequencies follow the softmax; a fixed seed repeats the draws exactly.
  runtime::SamplingOptions t;
  t.temperature = 1.0f;
  t.seed = 42;
  runtime::Sampler a(t, 4), b(t, 4);
  std::vector<int> counts(4, 0);
  const int n = 20000;
  for (int i = 0; i < n; ++i) {
    std::vector<float> l1 = logits, l2 = logits;
    int64_t x = a.sample(l1.data(), {});
    ASSERT_EQ(x, b.sample(l2.data(), {}));
    ++counts[x];
  }
  double z = 0;
  for (float l : logits) z += std::exp(l);
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(counts[i] / double(n), std::exp(logits[i]) / z, 0.015) << i;
  runtime::SamplingOptions bad;
  bad.top_p = 0.0f;
  EXPECT_RAD_ERROR(runtime::Sampler(bad, 4), "top-p");
  bad = {};
  bad.temperature = -1;
  EXPECT_RAD_ERROR(runtime::Sampler(bad, 4), "temperature");
}

TEST(RuntimeSampler, LogSoftmaxAndTopKAsTheServerReportsThem) {
  // log_softmax equals the float64 formula, stays finite for far-apart logits and sums to 1.
  std::vector<float> logits = {2.0f, -1.0f, 0.5f, 2.0f, -80.0f, 30.0f};
  std::vector<float> lp(logits.size());
  runtime::log_softmax(logits.data(), static_cast<int64_t>(logits.size()), lp.data());
  double mx = 30, sum = 0;
  for (float x : logits) sum += std::exp(static_cast<double>(x) - mx);
  double total = 0;
  for (size_t i = 0; i < logits.size(); ++i) {
    const double want = logits[i] - mx - std::log(sum);
    EXPECT_NEAR(lp[i], want, 1e-6 * (1 + std::abs(want))) << i;
    EXPECT_TRUE(std::isfinite(lp[i]));
    total += std::exp(static_cast<double>(lp[i]));
  }
  EXPECT_NEAR(total, 1.0, 1e-6);
  // In place gives the same.
  std::vector<float> in_place = logits;
  runtime::log_softmax(in_place.data(), static_cast<int64_t>(in_place.size()), in_place.data());
  EXPECT_EQ(in_place, lp);
  // top_k: largest first, ties to the lower index (as greedy's argmax), k clamped to n.
  std::vector<std::pair<int64_t, float>> top;
  runtime::top_k(logits.data(), static_cast<int64_t>(logits.size()), 3, top);
  ASSERT_EQ(top.size(), 3u);
  EXPECT_EQ(top[0].first, 5);
  EXPECT_EQ(top[1].first, 0);
  EXPECT_EQ(top[2].first, 3);
  EXPECT_EQ(top[1].second, 2.0f);
  runtime::top_k(logits.data(), static_cast<int64_t>(logits.size()), 100, top);
  ASSERT_EQ(top.size(), logits.size());
  EXPECT_EQ(top.back().first, 4);
  runtime::top_k(logits.data(), static_cast<int64_t>(logits.size()), 0, top);
  EXPECT_TRUE(top.empty());
}

TEST(RuntimeSampler, StopStringsAndEosEndGeneration) {
  auto m = runtime::Model::load(fixture_model("llama_gqa"));
  runtime::SessionOptions so;
  so.n_ctx = 40;
  std::vector<int64_t> prompt = {1, 5, 9};
  runtime::Session s(m, so);
  runtime::GenerateOptions o;
  o.max_new_tokens = 12;
  o.stop_at_eos = false;
  std::vector<int64_t> all = runtime::generate(s, prompt, o).tokens;
  ASSERT_EQ(all.size(), 12u);
  // Text = the ids joined by spaces; stopping at the text of the 4th token ends after it.
  auto decode = [](const std::vector<int64_t>& t) {
    std::string s;
    for (int64_t id : t) s += "<" + std::to_string(id) + ">";
    return s;
  };
  s.reset();
  o.decode = decode;
  o.stop_strings = {"<" + std::to_string(all[3]) + ">"};
  runtime::GenerateResult r = runtime::generate(s, prompt, o);
  EXPECT_EQ(r.stop_reason, "stop_string");
  size_t first = std::find(all.begin(), all.end(), all[3]) - all.begin();
  EXPECT_EQ(r.tokens, std::vector<int64_t>(all.begin(), all.begin() + first + 1));
  // EOS: declare the 3rd generated token the end of sequence.
  s.reset();
  o.stop_strings.clear();
  o.stop_at_eos = true;
  o.eos_token_ids = {all[2]};
  r = runtime::generate(s, prompt, o);
  EXPECT_EQ(r.stop_reason, "eos");
  EXPECT_EQ(r.tokens.back(), all[2]);
  EXPECT_LE(r.tokens.size(), 3u);
}

// ---- bad input ----

void copy_dir(const std::string& from, const std::string& to) {
  fs::create_directories(to);
  for (const auto& e : fs::directory_iterator(from)) fs::copy_file(e.path(), fs::path(to) / e.path().filename());
}

TEST(Runtime, BadInputGivesClearErrors) {
  TempDir dir;
  // Truncated checkpoint.
  std::string trunc = dir.file("trunc");
  copy_dir(fixture_model("llama_gqa"), trunc);
  fs::resize_file(trunc + "/model.safetensors", fs::file_size(trunc + "/model.safetensors") - 100);
  EXPECT_RAD_ERROR(runtime::Model::load(trunc), "truncated");
  fs::resize_file(trunc + "/model.safetensors", 5);
  EXPECT_RAD_ERROR(runtime::Model::load(trunc), "too small");

  // Unsupported dtype: one weight stored as F64.
  std::string f64 = dir.file("f64");
  copy_dir(fixture_model("llama_gqa"), f64);
  {
    auto tensors = io::read_model_tensors(fixture_model("llama_gqa"));
    std::vector<std::pair<std::string, at::Tensor>> list;
    for (auto& [name, t] : tensors)
      list.emplace_back(name, name == "model.layers.1.mlp.up_proj.weight" ? t.to(at::kDouble) : t.clone());
    io::save_safetensors(f64 + "/model.safetensors", list);
  }
  EXPECT_RAD_ERROR(runtime::Model::load(f64), "\"model.layers.1.mlp.up_proj.weight\" has dtype F64");

  // A tensor missing, and one the config does not explain.
  std::string odd = dir.file("odd");
  copy_dir(fixture_model("llama_gqa"), odd);
  {
    auto tensors = io::read_model_tensors(fixture_model("llama_gqa"));
    std::vector<std::pair<std::string, at::Tensor>> list;
    for (auto& [name, t] : tensors)
      if (name != "model.layers.0.self_attn.k_proj.weight") list.emplace_back(name, t.clone());
    io::save_safetensors(odd + "/model.safetensors", list);
    EXPECT_RAD_ERROR(runtime::Model::load(odd), "\"model.layers.0.self_attn.k_proj.weight\" is missing");
    list.emplace_back("model.layers.0.self_attn.k_proj.weight", tensors["model.layers.0.self_attn.k_proj.weight"].clone());
    list.emplace_back("model.layers.0.extra.weight", at::zeros({2}));
    io::save_safetensors(odd + "/model.safetensors", list);
    EXPECT_RAD_ERROR(runtime::Model::load(odd), "model.layers.0.extra.weight");
  }
  // A hybrid whose plan does not match its tensors names the tensor and its shape.
  {
    HybridConfig hc;
    make_hybrid(hybrid_cases()[2], dir.file("hyb"), &hc);
    nlohmann::json j = nlohmann::json::parse(std::ifstream(dir.file("hyb/config.json")));
    j["head_plan"] = {{"kept_heads", {{0, 0}, {0, 1}, {1, 2}}}};
    std::ofstream(dir.file("hyb/config.json")) << j.dump();
    EXPECT_RAD_ERROR(runtime::Model::load(dir.file("hyb")), "has shape");
  }
  // Unsupported architecture.
  std::string arch = dir.file("arch");
  copy_dir(fixture_model("llama_gqa"), arch);
  {
    nlohmann::json j = nlohmann::json::parse(std::ifstream(arch + "/config.json"));
    j["architectures"] = {"GPT2LMHeadModel"};
    j["model_type"] = "gpt2";
    std::ofstream(arch + "/config.json") << j.dump();
  }
  EXPECT_RAD_ERROR(runtime::Model::load(arch), "GPT2");
  EXPECT_RAD_ERROR(runtime::Model::load(dir.file("nothing")), "not a directory");
  // A shard index that points outside the model directory (the libtorch loader's rule, shared).
  {
    std::string sharded = dir.file("sharded");
    std::filesystem::copy(fixture_model("llama_sharded"), sharded, std::filesystem::copy_options::recursive);
    std::string index = sharded + "/model.safetensors.index.json";
    nlohmann::json j = nlohmann::json::parse(std::ifstream(index));
    j["weight_map"]["model.norm.weight"] = "../../etc/passwd";
    std::ofstream(index) << j.dump();
    EXPECT_RAD_ERROR(runtime::Model::load(sharded), "not a plain file name");
  }

  // Prompt longer than the context, and token ids outside the vocabulary.
  auto m = runtime::Model::load(fixture_model("llama_gqa"));
  runtime::SessionOptions so;
  so.n_ctx = 8;
  runtime::Session s(m, so);
  std::vector<int64_t> ids = test_ids(m->config().n_vocab, 9);
  EXPECT_RAD_ERROR(s.forward(ids.data(), 9), "exceed the context of 8 tokens");
  s.forward(ids.data(), 8);
  EXPECT_RAD_ERROR(s.step(1), "8 cached ones exceed the context");
  s.reset();
  int64_t bad = m->config().n_vocab;
  EXPECT_RAD_ERROR(s.step(bad), "outside the vocabulary");
  EXPECT_EQ(s.length(), 0);
}

// ---- CLI ----

TEST(RuntimeCli, GenerateEnginesAgreeAndBenchReports) {
  TempDir dir;
  HybridConfig hc;
  make_hybrid(hybrid_cases()[2], dir.file("hyb"), &hc);
  for (const std::string& model : {dir.file("hyb"), fixture_model("llama_gqa")}) {
    CliResult a = run_cli("generate " + model + " --token-ids 1,5,9 --max-new-tokens 8 --ignore-eos --stats");
    CliResult b = run_cli("generate " + model + " --token-ids 1,5,9 --max-new-tokens 8 --ignore-eos --engine torch");
    ASSERT_EQ(a.exit_code, 0) << a.err;
    ASSERT_EQ(b.exit_code, 0) << b.err;
    EXPECT_EQ(nlohmann::json::parse(a.out), nlohmann::json::parse(b.out)) << model;
    EXPECT_EQ(nlohmann::json::parse(a.out).size(), 8u);
    EXPECT_NE(a.err.find("engine=runtime"), std::string::npos) << a.err;
  }
  // Sampling with a seed is reproducible.
  std::string args = "generate " + fixture_model("llama_gqa") + " --token-ids 1,5,9 --max-new-tokens 8 --ignore-eos "
                     "--temperature 0.9 --top-k 20 --top-p 0.95 --repeat-penalty 1.1 --seed 7";
  CliResult s1 = run_cli(args), s2 = run_cli(args);
  ASSERT_EQ(s1.exit_code, 0) << s1.err;
  EXPECT_EQ(s1.out, s2.out);
  // A prompt longer than the context is an error, not a crash.
  CliResult c = run_cli("generate " + fixture_model("llama_gqa") + " --token-ids 1,2,3,4,5 --ctx 4");
  EXPECT_EQ(c.exit_code, 1);
  EXPECT_NE(c.err.find("the prompt has 5 tokens but the context is 4"), std::string::npos) << c.err;

  CliResult r = run_cli("bench " + dir.file("hyb") + " --prompt 4,16 --gen 4 --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  nlohmann::json j = nlohmann::json::parse(r.out);
  ASSERT_EQ(j.size(), 2u);
  EXPECT_EQ(j[1]["n_prompt"], 16);
  EXPECT_GT(j[1]["tg_tokens_per_s"].get<double>(), 0);
  EXPECT_GT(j[1]["pp_tokens_per_s"].get<double>(), 0);
  EXPECT_EQ(j[1]["cache_bytes_used"], (16 + 4) * hc.kv_bytes_per_token(4) + hc.ssm_state_bytes());
  EXPECT_GT(j[1]["peak_rss_bytes"].get<int64_t>(), 0);
  r = run_cli("bench " + dir.file("hyb") + " --prompt 4 --gen 2");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("| tg2 @ 4 |"), std::string::npos) << r.out;
}

TEST(RuntimeCli, CacheTypeF16HalvesTheReportedKvBytesAndBadValuesAreNamed) {
  TempDir dir;
  HybridConfig hc;
  make_hybrid(hybrid_cases()[2], dir.file("hyb"), &hc);
  CliResult r = run_cli("bench " + dir.file("hyb") + " --prompt 16 --gen 4 --cache-type f16 --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  nlohmann::json j = nlohmann::json::parse(r.out);
  ASSERT_EQ(j.size(), 1u);
  EXPECT_EQ(j[0]["cache_type"], "f16");
  EXPECT_EQ(j[0]["cache_bytes_used"], (16 + 4) * hc.kv_bytes_per_token(2) + hc.ssm_state_bytes());
  EXPECT_EQ(j[0]["cache_bytes_allocated"], (16 + 4) * hc.kv_bytes_per_token(2) + hc.ssm_state_bytes());
  r = run_cli("bench " + dir.file("hyb") + " --prompt 16 --gen 4 --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out)[0]["cache_type"], "f32");
  // generate: f16 runs and reports its bytes; greedy tokens of the default teacher are the f32 ones.
  const std::string teacher = source_dir() + "/models/default-teacher";
  CliResult a = run_cli("generate " + teacher + " --token-ids 4094,17,230,1021 --max-new-tokens 12 --ignore-eos --stats");
  CliResult b = run_cli("generate " + teacher + " --token-ids 4094,17,230,1021 --max-new-tokens 12 --ignore-eos --stats "
                        "--cache-type f16");
  ASSERT_EQ(a.exit_code, 0) << a.err;
  ASSERT_EQ(b.exit_code, 0) << b.err;
  EXPECT_EQ(a.out, b.out);
  auto bytes = [](const std::string& err) {
    const size_t at = err.find("cache_bytes=");
    return at == std::string::npos ? int64_t{-1} : std::stoll(err.substr(at + 12));
  };
  EXPECT_GT(bytes(a.err), 0) << a.err;
  EXPECT_EQ(bytes(b.err) * 2, bytes(a.err)) << b.err;  // a teacher: all K/V
  for (const std::string& cmd : {"bench " + dir.file("hyb") + " --prompt 4 --gen 1", "generate " + teacher +
                                     " --token-ids 1,2", "chat " + teacher + " < /dev/null", "serve " + teacher}) {
    CliResult bad = run_cli(cmd + " --cache-type bf16");
    EXPECT_EQ(bad.exit_code, 1) << cmd;
    EXPECT_NE(bad.err.find("--cache-type: unknown K/V cache type 'bf16' (allowed: f32, f16"), std::string::npos)
        << cmd << ": " << bad.err;
  }
  CliResult torch = run_cli("generate " + teacher + " --token-ids 1,2 --engine torch --cache-type f16");
  EXPECT_EQ(torch.exit_code, 1);
  EXPECT_NE(torch.err.find("--cache-type f16 needs --engine runtime"), std::string::npos) << torch.err;
}

TEST(RuntimeCli, ChatKeepsTheCacheBetweenTurnsAndResets) {
  const std::string model = source_dir() + "/models/default-teacher";
  TempDir dir;
  std::ofstream(dir.file("in.txt")) << "In the beginning\n/reset\nIn the beginning\nAnd God said\n";
  CliResult r = run_cli("chat " + model + " --max-new-tokens 6 --stats < " + dir.file("in.txt"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // One stats line per turn: the session length after /reset equals the first turn's, and the
  // third turn continues the second (its length adds up instead of starting over).
  std::vector<int64_t> lengths;
  for (size_t at = 0; (at = r.err.find("length=", at)) != std::string::npos; at += 7)
    lengths.push_back(std::stoll(r.err.substr(at + 7)));
  ASSERT_EQ(lengths.size(), 3u) << r.err;
  EXPECT_EQ(lengths[0], lengths[1]);
  EXPECT_GT(lengths[2], lengths[1] + 3);
  EXPECT_FALSE(r.out.empty());
}

}  // namespace
}  // namespace rad::test
