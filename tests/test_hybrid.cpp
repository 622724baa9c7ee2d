// The hybrid student: SSD forms (chunked == step == naive, values and gradients), mixer invariants
// (keep-all == teacher, keep-none == pure SSM, prefill + step == full forward), conversion from a
// teacher, hybrid checkpoints, and the CLI (convert, inspect, generate --stats).
#include <ATen/ATen.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "rad/distill/init_from_attention.h"
#include "rad/io/checkpoint.h"
#include "rad/io/hybrid_checkpoint.h"
#include "rad/model/causal_lm.h"
#include "rad/model/hybrid_mixer.h"
#include "rad/model/ssm.h"
#include "rad/runtime/kernels.h"
#include "test_util.h"

namespace rad::test {
namespace {

double max_abs_diff(const at::Tensor& a, const at::Tensor& b) {
  return (a.to(at::kDouble) - b.to(at::kDouble)).abs().max().item<double>();
}

template <class F>
void expect_error_contains(F f, const std::string& text) {
  try {
    f();
    ADD_FAILURE() << "expected an error containing: " << text;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(text), std::string::npos) << e.what();
  }
}

struct SsdInputs {
  at::Tensor x, log_alpha, B, C, state;
};

SsdInputs random_ssd(int64_t b, int64_t t, int64_t h, int64_t p, int64_t n, uint64_t seed) {
  at::manual_seed(seed);
  SsdInputs in;
  in.x = at::randn({b, t, h, p});
  in.log_alpha = -at::softplus(at::randn({b, t, h}));  // alpha spread over (0, 1)
  in.B = at::randn({b, t, h, n}) * 0.5;
  in.C = at::randn({b, t, h, n}) * 0.5;
  in.state = at::randn({b, h, p, n});
  return in;
}

// ---- SSD forms ----

TEST(Ssd, ChunkedRecurrentAndNaiveAgree) {
  SsdInputs in = random_ssd(2, 13, 3, 4, 5, 1);
  at::Tensor naive = ssd_naive(in.x, in.log_alpha, in.B, in.C);
  auto [rec, rec_state] = ssd_recurrent(in.x, in.log_alpha, in.B, in.C);
  EXPECT_LT(max_abs_diff(rec, naive), 1e-5);
  for (int64_t chunk : {1, 4, 5, 13, 64}) {  // 13 % 4 != 0: padded tail
    auto [y, state] = ssd_chunked(in.x, in.log_alpha, in.B, in.C, chunk);
    EXPECT_LT(max_abs_diff(y, naive), 1e-5) << "chunk " << chunk;
    EXPECT_LT(max_abs_diff(state, rec_state), 1e-5) << "chunk " << chunk;
  }
}

TEST(Ssd, InitialStateIsCarried) {
  SsdInputs in = random_ssd(1, 9, 2, 3, 4, 2);
  at::Tensor naive = ssd_naive(in.x, in.log_alpha, in.B, in.C, in.state);
  auto [rec, rec_state] = ssd_recurrent(in.x, in.log_alpha, in.B, in.C, in.state);
  auto [y, state] = ssd_chunked(in.x, in.log_alpha, in.B, in.C, 4, in.state);
  EXPECT_LT(max_abs_diff(rec, naive), 1e-5);
  EXPECT_LT(max_abs_diff(y, naive), 1e-5);
  EXPECT_LT(max_abs_diff(state, rec_state), 1e-5);
  // and it matters: without it the outputs differ
  EXPECT_GT(max_abs_diff(ssd_chunked(in.x, in.log_alpha, in.B, in.C, 4).first, naive), 1e-2);
}

TEST(Ssd, SplittingASequenceAtAnyPointGivesTheSameOutput) {
  SsdInputs in = random_ssd(1, 11, 2, 3, 4, 3);
  auto [full, full_state] = ssd_chunked(in.x, in.log_alpha, in.B, in.C, 4);
  auto [a, mid] = ssd_chunked(in.x.narrow(1, 0, 6), in.log_alpha.narrow(1, 0, 6), in.B.narrow(1, 0, 6), in.C.narrow(1, 0, 6), 4);
  auto [b, end] = ssd_chunked(in.x.narrow(1, 6, 5), in.log_alpha.narrow(1, 6, 5), in.B.narrow(1, 6, 5), in.C.narrow(1, 6, 5), 4, mid);
  EXPECT_LT(max_abs_diff(at::cat({a, b}, 1), full), 1e-5);
  EXPECT_LT(max_abs_diff(end, full_state), 1e-5);
}

TEST(Ssd, ChunkedGradientsMatchNaive) {
  SsdInputs in = random_ssd(2, 10, 2, 3, 4, 4);
  at::Tensor w = at::randn({2, 10, 2, 3});
  auto grads = [&](bool chunked) {
    std::vector<at::Tensor> leaves = {in.x.clone().requires_grad_(), in.log_alpha.clone().requires_grad_(),
                                      in.B.clone().requires_grad_(), in.C.clone().requires_grad_(),
                                      in.state.clone().requires_grad_()};
    at::Tensor y = chunked ? ssd_chunked(leaves[0], leaves[1], leaves[2], leaves[3], 3, leaves[4]).first
                           : ssd_naive(leaves[0], leaves[1], leaves[2], leaves[3], leaves[4]);
    (y * w).sum().backward();
    std::vector<at::Tensor> g;
    for (auto& l : leaves) g.push_back(l.grad());
    return g;
  };
  auto gc = grads(true), gn = grads(false);
  const char* names[] = {"x", "log_alpha", "B", "C", "initial_state"};
  for (size_t i = 0; i < gc.size(); ++i) {
    ASSERT_TRUE(gc[i].defined()) << names[i];
    EXPECT_GT(gn[i].abs().max().item<double>(), 1e-3) << names[i];
    EXPECT_LT(max_abs_diff(gc[i], gn[i]), 1e-5 * std::max(1.0, gn[i].abs().max().item<double>())) << names[i];
  }
}

// The fused scan against the chunked form (values) and the naive form (gradients through y and the
// final state, including the initial state's), with each ISA this CPU has, for checkpoint
// intervals that divide T, do not, and exceed it; P = 12 and N = 5 exercise the 8-wide sums' tails.
TEST(Ssd, FusedScanMatchesChunkedValuesAndNaiveGradients) {
  SsdInputs in = random_ssd(2, 11, 3, 12, 5, 7);
  at::Tensor wy = at::randn({2, 11, 3, 12}), ws = at::randn({2, 3, 12, 5});
  std::vector<runtime::Isa> isas = {runtime::Isa::kPortable};
  if (runtime::detected_isa() == runtime::Isa::kAvx2) isas.push_back(runtime::Isa::kAvx2);
  const runtime::Isa before = runtime::active_isa();
  auto leaves = [&] {
    return std::vector<at::Tensor>{in.x.clone().requires_grad_(), in.log_alpha.clone().requires_grad_(),
                                   in.B.clone().requires_grad_(), in.C.clone().requires_grad_(),
                                   in.state.clone().requires_grad_()};
  };
  // Reference: the naive output for y, the recurrence's final state, both differentiated by autograd.
  std::vector<at::Tensor> ref = leaves();
  at::Tensor y_ref = ssd_naive(ref[0], ref[1], ref[2], ref[3], ref[4]);
  at::Tensor s_ref = ssd_recurrent(ref[0], ref[1], ref[2], ref[3], ref[4]).second;
  ((y_ref * wy).sum() + (s_ref * ws).sum()).backward();
  auto [y_chunk, s_chunk] = ssd_chunked(in.x, in.log_alpha, in.B, in.C, 4, in.state);
  const char* names[] = {"x", "log_alpha", "B", "C", "initial_state"};
  for (runtime::Isa isa : isas) {
    runtime::set_isa(isa);
    for (int64_t every : {1, 4, 11, 64}) {
      std::vector<at::Tensor> l = leaves();
      auto [y, s] = ssd_scan(l[0], l[1], l[2], l[3], l[4], every);
      EXPECT_LT(max_abs_diff(y, y_chunk), 1e-5) << runtime::isa_name(isa) << " every " << every;
      EXPECT_LT(max_abs_diff(s, s_chunk), 1e-5) << runtime::isa_name(isa) << " every " << every;
      ((y * wy).sum() + (s * ws).sum()).backward();
      for (size_t i = 0; i < l.size(); ++i) {
        ASSERT_TRUE(l[i].grad().defined()) << names[i];
        const double scale = std::max(1.0, ref[i].grad().abs().max().item<double>());
        EXPECT_GT(ref[i].grad().abs().max().item<double>(), 1e-3) << names[i];
        EXPECT_LT(max_abs_diff(l[i].grad(), ref[i].grad()), 1e-5 * scale)
            << names[i] << " " << runtime::isa_name(isa) << " every " << every;
      }
    }
  }
  runtime::set_isa(before);
}

TEST(Ssd, FusedScanWithoutGradientToTheFinalStateAndBadInput) {
  SsdInputs in = random_ssd(1, 9, 2, 3, 4, 8);
  at::Tensor x = in.x.clone().requires_grad_(), la = in.log_alpha.clone().requires_grad_();
  at::Tensor B = in.B.clone().requires_grad_(), C = in.C.clone().requires_grad_();
  ssd_scan(x, la, B, C, {}, 4).first.sum().backward();  // the final state unused: its gradient is undefined
  at::Tensor x2 = in.x.clone().requires_grad_(), la2 = in.log_alpha.clone().requires_grad_();
  at::Tensor B2 = in.B.clone().requires_grad_(), C2 = in.C.clone().requires_grad_();
  ssd_naive(x2, la2, B2, C2).sum().backward();
  EXPECT_LT(max_abs_diff(x.grad(), x2.grad()), 1e-5);
  EXPECT_LT(max_abs_diff(la.grad(), la2.grad()), 1e-5);
  EXPECT_LT(max_abs_diff(B.grad(), B2.grad()), 1e-5);
  EXPECT_LT(max_abs_diff(C.grad(), C2.grad()), 1e-5);
  expect_error_contains([&] { ssd_scan(in.x.to(at::kDouble), in.log_alpha, in.B, in.C); }, "float32 CPU");
  expect_error_contains([&] { ssd_scan(in.x, in.log_alpha, in.B, in.C, at::zeros({1, 2, 4, 3})); }, "initial state");
  // ssd_sequence falls back to the chunked form where the scan does not apply
  at::Tensor yd = ssd_sequence(in.x.to(at::kDouble), in.log_alpha.to(at::kDouble), in.B.to(at::kDouble),
                               in.C.to(at::kDouble), 4).first;
  EXPECT_EQ(yd.scalar_type(), at::kDouble);
  EXPECT_LT(max_abs_diff(yd, ssd_naive(in.x, in.log_alpha, in.B, in.C)), 1e-5);
}

TEST(Ssd, NaiveMatchesAHandComputedTwoStepExample) {
  // One head, P = N = 1: y1 = c1 b1 x1, y2 = c2 (alpha2 b1 x1 + b2 x2).
  at::Tensor x = at::tensor({2.0f, 3.0f}).view({1, 2, 1, 1});
  at::Tensor la = at::log(at::tensor({0.9f, 0.5f})).view({1, 2, 1});
  at::Tensor B = at::tensor({1.0f, 4.0f}).view({1, 2, 1, 1});
  at::Tensor C = at::tensor({5.0f, 7.0f}).view({1, 2, 1, 1});
  at::Tensor y = ssd_naive(x, la, B, C).flatten();
  EXPECT_NEAR(y[0].item<double>(), 10.0, 1e-5);
  EXPECT_NEAR(y[1].item<double>(), 7.0 * (0.5 * 2.0 + 12.0), 1e-4);
}

// ---- hybrid model ----

HybridConfig hybrid_config(const ModelConfig& base, std::vector<std::pair<int64_t, int64_t>> kept, int64_t d_state,
                           bool conv = false, bool gate = false, int64_t chunk = 4) {
  HybridConfig hc;
  hc.base = base;
  hc.plan.kept_heads = std::move(kept);
  hc.ssm.d_state = d_state;
  hc.ssm.conv = conv;
  hc.ssm.gate = gate;
  hc.ssm.chunk_size = chunk;
  return hc;
}

std::vector<std::pair<int64_t, int64_t>> all_heads(const ModelConfig& c) {
  std::vector<std::pair<int64_t, int64_t>> v;
  for (int64_t l = 0; l < c.n_layer; ++l)
    for (int64_t h = 0; h < c.n_head; ++h) v.emplace_back(l, h);
  return v;
}

at::Tensor test_ids(int64_t n_vocab, int64_t T) { return (at::arange(T, at::kLong) * 7 + 3).remainder(n_vocab).unsqueeze(0); }

TEST(Hybrid, KeepingEveryHeadReproducesTheTeacherExactly) {
  for (const char* name : {"llama_gqa", "qwen2_bias", "llama_tied_mha"}) {
    CausalLM teacher = io::load_causal_lm(fixture_model(name));
    HybridConfig hc = hybrid_config(teacher->config(), all_heads(teacher->config()), 4);
    CausalLM hybrid = convert_from_teacher(teacher, hc, SsmInit::kAttention);
    for (const auto& item : hybrid->named_parameters())
      EXPECT_EQ(item.key().find(".ssm."), std::string::npos) << name << ": " << item.key();
    EXPECT_EQ(hybrid->parameter_count(), teacher->parameter_count()) << name;
    at::NoGradGuard no_grad;
    at::Tensor ids = test_ids(teacher->config().n_vocab, 12);
    EXPECT_LT(max_abs_diff(hybrid->forward(ids), teacher->forward(ids)), 1e-6) << name;
  }
}

TEST(Hybrid, KeepingNoHeadIsAPureSsm) {
  CausalLM teacher = io::load_causal_lm(fixture_model("llama_gqa"));
  HybridConfig hc = hybrid_config(teacher->config(), {}, 8);
  CausalLM hybrid = convert_from_teacher(teacher, hc, SsmInit::kAttention);
  for (const auto& item : hybrid->named_parameters()) {
    EXPECT_EQ(item.key().find("q_proj"), std::string::npos) << item.key();
    EXPECT_EQ(item.key().find("k_proj"), std::string::npos) << item.key();
  }
  at::NoGradGuard no_grad;
  // The cache is a fixed-size state: the same bytes after 4 and after 40 tokens, and no KV.
  DecodeCache c1 = hybrid->new_cache(), c2 = hybrid->new_cache();
  hybrid->forward(test_ids(64, 4), &c1);
  hybrid->forward(test_ids(64, 40), &c2);
  EXPECT_EQ(c1.bytes(), c2.bytes());
  EXPECT_EQ(c1.bytes(), hc.ssm_state_bytes());
  for (const auto& l : c2.layers) EXPECT_EQ(static_cast<HybridCache*>(l.get())->kv_bytes(), 0);
  // Causal: a later token does not change earlier outputs.
  at::Tensor ids = test_ids(64, 10), ids2 = ids.clone();
  ids2[0][9] = 1;
  at::Tensor a = hybrid->forward(ids), b = hybrid->forward(ids2);
  EXPECT_LT(max_abs_diff(a.narrow(1, 0, 9), b.narrow(1, 0, 9)), 1e-6);
  EXPECT_GT(max_abs_diff(a.narrow(1, 9, 1), b.narrow(1, 9, 1)), 1e-4);
  // ... and it is not the teacher.
  EXPECT_GT(max_abs_diff(a, teacher->forward(ids)), 1e-3);
}

TEST(Hybrid, KeptHeadsAreExactlyTheTeachersHeads) {
  // Layer 0 keeps heads 0, 1 (group 0) and 3 (group 1): uneven groups. On layer 0 the input is the
  // same as the teacher's, so the kept heads' outputs z must match the teacher's exactly.
  CausalLM teacher = io::load_causal_lm(fixture_model("llama_gqa"));
  HybridConfig hc = hybrid_config(teacher->config(), {{0, 0}, {0, 1}, {0, 3}, {1, 2}}, 8);
  CausalLM hybrid = convert_from_teacher(teacher, hc, SsmInit::kAttention);
  auto capture = [](std::vector<at::Tensor>* zs) {
    ForwardHooks h;
    h.head_output = [zs](int64_t, const at::Tensor& z) {
      zs->push_back(z);
      return z;
    };
    return h;
  };
  std::vector<at::Tensor> zt, zh;
  ForwardHooks ht = capture(&zt), hh = capture(&zh);
  at::NoGradGuard no_grad;
  at::Tensor ids = test_ids(64, 11);
  teacher->forward(ids, nullptr, &ht);
  hybrid->forward(ids, nullptr, &hh);
  for (int64_t h : {0, 1, 3}) EXPECT_LT(max_abs_diff(zh[0].select(2, h), zt[0].select(2, h)), 1e-6) << h;
  EXPECT_GT(max_abs_diff(zh[0].select(2, 2), zt[0].select(2, 2)), 1e-4);  // the SSM head differs
  // The cache holds only kept KV groups: 2 in layer 0, 1 in layer 1.
  DecodeCache cache = hybrid->new_cache();
  hybrid->forward(ids, &cache);
  EXPECT_EQ(static_cast<HybridCache*>(cache.layers[0].get())->k.size(1), 2);
  EXPECT_EQ(static_cast<HybridCache*>(cache.layers[1].get())->k.size(1), 1);
  EXPECT_EQ(cache.bytes(), 11 * hc.kv_bytes_per_token(4) + hc.ssm_state_bytes());
}

TEST(Hybrid, AttentionInitSsmHeadsStartAtTheSizeOfTheAttentionHeads) {
  // Without the 1 - alpha scaling of C the state sums x B^T over the sequence, and on 96 tokens the
  // long-memory heads' outputs are tens of times the softmax heads' (which average values).
  CausalLM teacher = io::load_causal_lm(fixture_model("llama_gqa"));
  HybridConfig hc = hybrid_config(teacher->config(), {}, 8);
  CausalLM hybrid = convert_from_teacher(teacher, hc, SsmInit::kAttention);
  std::vector<at::Tensor> zt, zh;
  ForwardHooks ht, hh;
  ht.head_output = [&zt](int64_t, const at::Tensor& z) { zt.push_back(z); return z; };
  hh.head_output = [&zh](int64_t, const at::Tensor& z) { zh.push_back(z); return z; };
  at::NoGradGuard no_grad;
  at::Tensor ids = test_ids(64, 96);
  teacher->forward(ids, nullptr, &ht);
  hybrid->forward(ids, nullptr, &hh);
  // Layer 0 sees the same input in both; compare the root-mean-square head outputs.
  const double rms_teacher = zt[0].pow(2).mean().sqrt().item<double>();
  const double rms_ssm = zh[0].pow(2).mean().sqrt().item<double>();
  EXPECT_LT(rms_ssm, 2.0 * rms_teacher) << "SSM " << rms_ssm << " vs attention " << rms_teacher;
  EXPECT_GT(rms_ssm, 0.0);
}

TEST(Hybrid, AttentionInitCopiesQKVRowsIntoTheSsmHeads) {
  CausalLM teacher = io::load_causal_lm(fixture_model("llama_gqa"));  // d_head 8, groups of 2
  HybridConfig hc = hybrid_config(teacher->config(), {{0, 0}}, 4);
  CausalLM hybrid = convert_from_teacher(teacher, hc, SsmInit::kAttention);
  auto* mixer = dynamic_cast<HybridMixer*>(hybrid->model->layer_list[0]->self_attn.get());
  auto* att = dynamic_cast<Attention*>(teacher->model->layer_list[0]->self_attn.get());
  ASSERT_EQ(mixer->ssm_heads, (std::vector<int64_t>{1, 2, 3}));
  // SSM head index 2 is query head 3, KV group 1.
  EXPECT_TRUE(at::equal(mixer->ssm->x_proj->weight.narrow(0, 16, 8), att->v_proj->weight.narrow(0, 8, 8)));
  // B and C keep the 4 lowest-frequency rotary dims of the 8: {2, 3, 6, 7} (ssm_state_dims).
  at::Tensor dims = at::tensor(std::vector<int64_t>{2, 3, 6, 7}, at::kLong);
  EXPECT_TRUE(at::equal(mixer->ssm->B_proj->weight.narrow(0, 8, 4), att->k_proj->weight.index_select(0, dims + 8)));
  // C: the Q rows scaled by (1 - alpha_h) / sqrt(d_head), so that the state is an exponential
  // moving average of x B^T (its size that of one value, not of a sum over ~1/(1 - alpha) tokens).
  at::Tensor alpha = at::exp(-at::softplus(mixer->ssm->a_proj->bias));
  EXPECT_TRUE(at::allclose(mixer->ssm->C_proj->weight.narrow(0, 8, 4),
                           att->q_proj->weight.index_select(0, dims + 24) * (1.0 - alpha[2].item<double>()) /
                               std::sqrt(8.0)));
  // Long memory at init: every SSM head keeps alpha >= exp(-0.1).
  EXPECT_GE(alpha.min().item<double>(), std::exp(-0.1) - 1e-6);
  EXPECT_LE(alpha.max().item<double>(), std::exp(-1e-3) + 1e-6);
  // d_state > d_head cannot come from attention weights.
  EXPECT_RAD_ERROR(convert_from_teacher(teacher, hybrid_config(teacher->config(), {}, 16), SsmInit::kAttention), "d_state 16 > d_head 8");
}

struct DecodeCase {
  const char* fixture;
  std::vector<std::pair<int64_t, int64_t>> kept;  // {-1,-1}: all heads
  bool conv, gate;
  SsmInit init;
};

TEST(Hybrid, PrefillPlusStepDecodeEqualsFullForward) {
  std::vector<DecodeCase> cases = {
      {"llama_gqa", {{-1, -1}}, false, false, SsmInit::kAttention},         // keep all (= teacher)
      {"llama_gqa", {}, false, false, SsmInit::kAttention},                 // pure SSM
      {"llama_gqa", {}, true, true, SsmInit::kRandom},                      // pure SSM, conv + gate
      {"llama_gqa", {{0, 0}, {0, 3}, {1, 1}}, true, true, SsmInit::kRandom},  // hybrid
      {"qwen2_bias", {{0, 1}, {1, 0}}, false, true, SsmInit::kAttention},
      {"mistral_headdim", {{1, 0}}, true, false, SsmInit::kAttention},     // sliding window
  };
  for (const auto& dc : cases) {
    CausalLM teacher = io::load_causal_lm(fixture_model(dc.fixture));
    auto kept = !dc.kept.empty() && dc.kept[0].first < 0 ? all_heads(teacher->config()) : dc.kept;
    HybridConfig hc = hybrid_config(teacher->config(), kept, 4, dc.conv, dc.gate, /*chunk=*/3);
    CausalLM hybrid = convert_from_teacher(teacher, hc, dc.init, 7);
    if (dc.conv) {  // a non-identity conv so that the conv state matters
      at::NoGradGuard g;
      for (auto& item : hybrid->named_parameters())
        if (item.key().find("conv_weight") != std::string::npos) item.value().uniform_(-0.5, 1.0);
    }
    at::NoGradGuard no_grad;
    const int64_t T = 14;
    at::Tensor ids = test_ids(teacher->config().n_vocab, T);
    at::Tensor full = hybrid->forward(ids);
    DecodeCache cache = hybrid->new_cache();
    std::vector<at::Tensor> pieces = {hybrid->forward(ids.narrow(1, 0, 5), &cache),
                                      hybrid->forward(ids.narrow(1, 5, 4), &cache)};  // chunked from a state
    for (int64_t t = 9; t < T; ++t) pieces.push_back(hybrid->forward(ids.narrow(1, t, 1), &cache));
    EXPECT_LT(max_abs_diff(at::cat(pieces, 1), full), 1e-5) << dc.fixture << " kept " << kept.size();
  }
}

TEST(Hybrid, SsmGradientsFlowThroughTheModel) {
  CausalLM teacher = io::load_causal_lm(fixture_model("llama_gqa"));
  CausalLM hybrid = convert_from_teacher(teacher, hybrid_config(teacher->config(), {{1, 0}}, 4, true, true), SsmInit::kAttention);
  hybrid->train();
  hybrid->forward(test_ids(64, 10)).logsumexp(-1).sum().backward();
  for (const auto& item : hybrid->named_parameters())
    if (item.key().find(".ssm.") != std::string::npos) {
      ASSERT_TRUE(item.value().grad().defined()) << item.key();
      EXPECT_TRUE(at::isfinite(item.value().grad()).all().item<bool>()) << item.key();
    }
}

// ---- checkpoints ----

TEST(HybridCheckpoint, SaveThenLoadIsBitExact) {
  TempDir dir;
  CausalLM teacher = io::load_causal_lm(fixture_model("qwen2_bias"));
  HybridConfig hc = hybrid_config(teacher->config(), {{0, 1}, {1, 0}}, 4, true, true);
  hc.ssm.bias = true;
  CausalLM hybrid = convert_from_teacher(teacher, hc, SsmInit::kRandom, 3);
  io::save_hybrid(hybrid, hc, dir.path());
  EXPECT_TRUE(io::is_hybrid_dir(dir.path()));
  EXPECT_FALSE(io::is_hybrid_dir(fixture_model("qwen2_bias")));
  io::HybridModel back = io::load_hybrid(dir.path());
  auto a = hybrid->named_parameters(), b = back.model->named_parameters();
  ASSERT_EQ(a.size(), b.size());
  for (const auto& item : a) EXPECT_TRUE(at::equal(item.value(), b[item.key()])) << item.key();
  EXPECT_EQ(back.config.plan.kept_heads, hc.plan.kept_heads);
  EXPECT_EQ(back.config.ssm.d_state, 4);
  EXPECT_TRUE(back.config.ssm.conv && back.config.ssm.gate && back.config.ssm.bias);
  EXPECT_EQ(back.config.base.model_type, "qwen2");
  at::NoGradGuard no_grad;
  at::Tensor ids = test_ids(teacher->config().n_vocab, 9);
  EXPECT_TRUE(at::equal(hybrid->forward(ids), back.model->forward(ids)));
  // load_causal_lm dispatches on model_type
  EXPECT_TRUE(at::equal(io::load_causal_lm(dir.path())->forward(ids), back.model->forward(ids)));
}

TEST(HybridCheckpoint, PlanThatDoesNotMatchTheTensorsIsAClearError) {
  TempDir dir;
  CausalLM teacher = io::load_causal_lm(fixture_model("llama_gqa"));
  HybridConfig hc = hybrid_config(teacher->config(), {{0, 0}}, 4);
  CausalLM hybrid = convert_from_teacher(teacher, hc, SsmInit::kAttention);
  io::save_hybrid(hybrid, hc, dir.path());
  nlohmann::json j = nlohmann::json::parse(std::ifstream(dir.file("config.json")));
  j["head_plan"] = {{"kept_heads", {{1, 2}}}};
  std::ofstream(dir.file("config.json")) << j.dump();
  try {
    io::load_hybrid(dir.path());
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("head plan"), std::string::npos) << m;
    EXPECT_NE(m.find("model.layers.1.self_attn.q_proj.weight"), std::string::npos) << m;  // missing
    EXPECT_NE(m.find("model.layers.0.self_attn.q_proj.weight"), std::string::npos) << m;  // unexpected
  }
  j["head_plan"] = {{"kept_heads", {{0, 0}}}};
  j["ssm"]["d_state"] = 8;
  std::ofstream(dir.file("config.json")) << j.dump();
  EXPECT_RAD_ERROR(io::load_hybrid(dir.path()), "model.layers.0.self_attn.ssm.B_proj.weight");
  j["ssm"]["d_state"] = 0;
  std::ofstream(dir.file("config.json")) << j.dump();
  EXPECT_RAD_ERROR(io::load_hybrid(dir.path()), "d_state must be >= 1");
  j["head_plan"] = {{"kept_heads", {{0, 9}}}};
  std::ofstream(dir.file("config.json")) << j.dump();
  EXPECT_RAD_ERROR(io::load_hybrid(dir.path()), "head_plan");
}

// ---- CLI ----

TEST(HybridCli, ConvertInspectGenerate) {
  TempDir dir;
  std::ofstream(dir.file("plan.json")) << R"({"kept_heads": [[0, 1], [1, 2], [1, 3]]})";
  CliResult r = run_cli("convert " + fixture_model("llama_gqa") + " --plan " + dir.file("plan.json") +
                        " --d-state 4 --conv --gate --out " + dir.file("hyb"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  nlohmann::json cfg = nlohmann::json::parse(std::ifstream(dir.file("hyb/config.json")));
  EXPECT_EQ(cfg["model_type"], "radistill_hybrid");
  EXPECT_EQ(cfg["ssm"]["d_state"], 4);
  EXPECT_EQ(cfg["hidden_size"], 32);  // the teacher's fields
  r = run_cli("inspect " + dir.file("hyb") + " --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  nlohmann::json j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["kept_heads"], 3);
  EXPECT_EQ(j["ssm_heads"], 5);
  EXPECT_EQ(j["kv_cache_bytes_per_token"], (1 + 1) * 2 * 8 * 4);  // one KV group in each layer
  EXPECT_EQ(j["ssm_state_bytes"], 5 * (8 * 4 + (8 + 2 * 4) * 3) * 4);
  r = run_cli("inspect " + dir.file("hyb"));
  EXPECT_NE(r.out.find("layer   1: attention heads [2, 3]"), std::string::npos) << r.out;
  r = run_cli("generate " + dir.file("hyb") + " --token-ids 1,5,9 --max-new-tokens 4 --ignore-eos --stats");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out).size(), 4u);
  EXPECT_NE(r.err.find("cache_bytes="), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("decode_tokens_per_s="), std::string::npos) << r.err;
  // Bad input: a plan naming a head the teacher does not have.
  std::ofstream(dir.file("bad.json")) << R"({"kept_heads": [[0, 7]]})";
  r = run_cli("convert " + fixture_model("llama_gqa") + " --plan " + dir.file("bad.json") + " --out " + dir.file("x"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("bad.json"), std::string::npos) << r.err;
  // d_state > d_head with the attention init.
  r = run_cli("convert " + fixture_model("llama_gqa") + " --plan " + dir.file("plan.json") + " --d-state 9 --out " + dir.file("y"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("d_state 9 > d_head 8"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace rad::test
