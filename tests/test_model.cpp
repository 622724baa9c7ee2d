// The Llama-family model against golden logits from an independent Python reference
// (tests/python/make_golden.py), plus cache, hook and save/load equivalences.
#include <ATen/ATen.h>

#include <filesystem>
#include <fstream>

#include "rad/io/checkpoint.h"
#include "rad/io/hf_config.h"
#include "rad/io/safetensors.h"
#include "rad/model/causal_lm.h"
#include "rad/model/generate.h"
#include "rad/model/layers.h"
#include "rad/model/rope_frequencies.h"
#include "rad/runtime/kernels.h"
#include "test_util.h"

namespace rad::test {
namespace {

// The one RoPE frequency definition (shared by the libtorch model and the runtime) against HF's
// rules computed in double: Llama-3.1's llama3 scaling has frequencies in all three bands (kept,
// interpolated, divided by the factor); linear divides every one.
TEST(Rope, InverseFrequenciesFollowTheScalingRulesInEveryBand) {
  ModelConfig c;
  c.d_head = 128;
  c.rope_theta = 500000.0;
  c.rope_scaling.type = "llama3";
  c.rope_scaling.factor = 8.0;
  c.rope_scaling.low_freq_factor = 1.0;
  c.rope_scaling.high_freq_factor = 4.0;
  c.rope_scaling.original_max_position_embeddings = 8192;
  const std::vector<float> got = rope_inverse_frequencies(c);
  ASSERT_EQ(got.size(), 64u);
  int kept = 0, divided = 0, interpolated = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double base = 1.0 / std::pow(500000.0, 2.0 * static_cast<double>(i) / 128.0);
    const double wavelen = 2.0 * M_PI / base, low_wl = 8192.0 / 1.0, high_wl = 8192.0 / 4.0;
    double want = base;
    if (wavelen < high_wl) {
      ++kept;
    } else if (wavelen > low_wl) {
      want = base / 8.0;
      ++divided;
    } else {
      const double smooth = (8192.0 / wavelen - 1.0) / (4.0 - 1.0);
      want = (1.0 - smooth) * base / 8.0 + smooth * base;
      ++interpolated;
    }
    EXPECT_NEAR(got[i], want, 1e-6 * want) << "frequency " << i;
  }
  EXPECT_GT(kept, 0);
  EXPECT_GT(divided, 0);
  EXPECT_GT(interpolated, 0);
  // The libtorch model's tensor holds exactly these values.
  at::Tensor t = rope_inv_freq(c);
  for (size_t i = 0; i < got.size(); ++i) EXPECT_EQ(t[static_cast<int64_t>(i)].item<float>(), got[i]);
  c.rope_scaling.type = "linear";
  c.rope_scaling.factor = 2.0;
  const std::vector<float> linear = rope_inverse_frequencies(c);
  for (size_t i = 0; i < linear.size(); ++i) {
    const double base = 1.0 / std::pow(500000.0, 2.0 * static_cast<double>(i) / 128.0);
    EXPECT_NEAR(linear[i], base / 2.0, 1e-6 * base) << "frequency " << i;
  }
}

struct Golden {
  at::Tensor input_ids;  // [1, T]
  at::Tensor logits;     // [T, V]
};

Golden load_golden(const std::string& name) {
  auto file = io::SafetensorsFile::open(fixture_model(name) + "/golden.safetensors");
  return {file->tensor("input_ids").clone().unsqueeze(0), file->tensor("logits").clone()};
}

double max_abs_diff(const at::Tensor& a, const at::Tensor& b) {
  return (a.to(at::kDouble) - b.to(at::kDouble)).abs().max().item<double>();
}

const char* const kFixtures[] = {"llama_gqa",         "llama_tied_mha", "qwen2_bias",      "llama3_rope",
                                 "llama_linear_rope", "llama_bf16",     "llama_sharded",   "mistral_headdim",
                                 "llama_fp16"};

class GoldenLogits : public ::testing::TestWithParam<const char*> {};

TEST_P(GoldenLogits, Float32MatchesReferenceWithin1e4) {
  Golden g = load_golden(GetParam());
  CausalLM model = io::load_causal_lm(fixture_model(GetParam()), at::kFloat);
  at::NoGradGuard no_grad;
  at::Tensor logits = model->forward(g.input_ids).squeeze(0);
  ASSERT_EQ(logits.sizes(), g.logits.sizes());
  EXPECT_LT(max_abs_diff(logits, g.logits), 1e-4);
}

// bf16 compute keeps 8 mantissa bits; logits of size ~3 carry errors of a few 1e-2 through two
// layers. This checks the bf16 path computes the same function, not bit-level accuracy.
TEST_P(GoldenLogits, BFloat16ComputeTracksReference) {
  Golden g = load_golden(GetParam());
  CausalLM model = io::load_causal_lm(fixture_model(GetParam()), at::kBFloat16);
  at::NoGradGuard no_grad;
  at::Tensor logits = model->forward(g.input_ids).squeeze(0);
  EXPECT_EQ(logits.scalar_type(), at::kBFloat16);
  EXPECT_LT(max_abs_diff(logits, g.logits), 0.25);
  // Same greedy choice almost everywhere.
  double agree = (logits.argmax(-1) == g.logits.argmax(-1)).to(at::kDouble).mean().item<double>();
  EXPECT_GE(agree, 0.8);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, GoldenLogits, ::testing::ValuesIn(kFixtures));

class DecodeEquivalence : public ::testing::TestWithParam<const char*> {};

TEST_P(DecodeEquivalence, PrefillPlusStepDecodeEqualsFullForward) {
  Golden g = load_golden(GetParam());
  CausalLM model = io::load_causal_lm(fixture_model(GetParam()), at::kFloat);
  at::NoGradGuard no_grad;
  at::Tensor full = model->forward(g.input_ids).squeeze(0);
  const int64_t T = g.input_ids.size(1), prefill = 5;
  DecodeCache cache = model->new_cache();
  std::vector<at::Tensor> pieces = {model->forward(g.input_ids.narrow(1, 0, prefill), &cache).squeeze(0)};
  for (int64_t t = prefill; t < T; ++t) pieces.push_back(model->forward(g.input_ids.narrow(1, t, 1), &cache).squeeze(0));
  EXPECT_EQ(cache.length, T);
  EXPECT_LT(max_abs_diff(at::cat(pieces, 0), full), 1e-5);
}

// mistral_headdim has sliding_window 5 < T, so decoding must apply the window to cached keys.
INSTANTIATE_TEST_SUITE_P(Fixtures, DecodeEquivalence,
                         ::testing::Values("llama_gqa", "qwen2_bias", "llama3_rope", "mistral_headdim"));

// The fused attention against libtorch's ops: values and gradients of q, k and v, with GQA (two
// query heads per KV group), a past (S > T: queries start at position S - T), a sliding window and
// a head dim that is not a multiple of 8, for each ISA this CPU has.
TEST(Attention, FusedMatchesTheReferenceInValuesAndGradients) {
  at::manual_seed(3);
  std::vector<runtime::Isa> isas = {runtime::Isa::kPortable};
  if (runtime::detected_isa() == runtime::Isa::kAvx2) isas.push_back(runtime::Isa::kAvx2);
  const runtime::Isa before = runtime::active_isa();
  // T = 70 spans three row blocks of the fused kernel; window 40 gives blocks whose rows see
  // different key ranges.
  for (auto [T, window] : std::vector<std::pair<int64_t, int64_t>>{{7, 0}, {7, 4}, {70, 0}, {70, 40}}) {
    const int64_t B = 2, H = 4, Hkv = 2, D = 12, past = 3, S = past + T;
    at::Tensor q0 = at::randn({B, T, H, D}), k0 = at::randn({B, Hkv, S, D}), v0 = at::randn({B, Hkv, S, D});
    at::Tensor w = at::randn({B, T, H, D});
    at::Tensor mask = causal_mask(past, T, window, at::kCPU);
    std::vector<at::Tensor> ref = {q0.clone().requires_grad_(), k0.clone().requires_grad_(), v0.clone().requires_grad_()};
    at::Tensor y_ref = grouped_attention_reference(ref[0], ref[1], ref[2], mask);
    (y_ref * w).sum().backward();
    for (runtime::Isa isa : isas) {
      runtime::set_isa(isa);
      // k and v as the model passes them: transposed views, not contiguous
      at::Tensor q = q0.clone().requires_grad_();
      at::Tensor kt = k0.transpose(1, 2).contiguous().requires_grad_(), vt = v0.transpose(1, 2).contiguous().requires_grad_();
      at::Tensor y = grouped_attention(q, kt.transpose(1, 2), vt.transpose(1, 2), mask);
      EXPECT_LT((y - y_ref).abs().max().item<double>(), 1e-5) << "T " << T << " window " << window << " " << runtime::isa_name(isa);
      (y * w).sum().backward();
      std::vector<at::Tensor> got = {q.grad(), kt.grad().transpose(1, 2), vt.grad().transpose(1, 2)};
      const char* names[] = {"q", "k", "v"};
      for (int i = 0; i < 3; ++i) {
        EXPECT_GT(ref[i].grad().abs().max().item<double>(), 1e-2) << names[i];
        EXPECT_LT((got[i] - ref[i].grad()).abs().max().item<double>(), 1e-5)
            << names[i] << " T " << T << " window " << window << " " << runtime::isa_name(isa);
      }
    }
  }
  runtime::set_isa(before);
  // A mask with two allowed ranges in a row takes the reference path and still gives its result.
  const int64_t B = 2, T = 7, H = 4, Hkv = 2, D = 12, S = 10;
  at::Tensor q0 = at::randn({B, T, H, D}), k0 = at::randn({B, Hkv, S, D}), v0 = at::randn({B, Hkv, S, D});
  at::Tensor mask = at::ones({T, S}, at::kBool);
  mask[2][4] = false;
  at::Tensor k = k0, v = v0;
  EXPECT_LT((grouped_attention(q0, k, v, mask) - grouped_attention_reference(q0, k, v, mask)).abs().max().item<double>(), 1e-6);
}

TEST(Model, KVCacheHoldsOnlyTheKVHeads) {
  CausalLM model = io::load_causal_lm(fixture_model("llama_gqa"), at::kFloat);
  const ModelConfig& c = model->config();
  DecodeCache cache = model->new_cache();
  at::NoGradGuard no_grad;
  model->forward(at::arange(10, at::kLong).unsqueeze(0), &cache);
  EXPECT_EQ(cache.bytes(), 10 * c.kv_cache_bytes_per_token(4));
}

TEST(Model, SaveThenLoadIsBitExact) {
  for (auto dtype : {at::kFloat, at::kBFloat16}) {
    TempDir dir;
    CausalLM model = io::load_causal_lm(fixture_model("qwen2_bias"), dtype);
    io::save_causal_lm(model, dir.path());
    CausalLM back = io::load_causal_lm(dir.path(), dtype);
    auto a = model->named_parameters(), b = back->named_parameters();
    ASSERT_EQ(a.size(), b.size());
    for (const auto& item : a) EXPECT_TRUE(at::equal(item.value(), b[item.key()])) << item.key();
    at::NoGradGuard no_grad;
    at::Tensor ids = at::arange(12, at::kLong).unsqueeze(0);
    EXPECT_TRUE(at::equal(model->forward(ids), back->forward(ids)));
    ModelConfig c = io::load_hf_config(dir.file("config.json"));
    EXPECT_EQ(c.torch_dtype, io::dtype_name(dtype));
    EXPECT_TRUE(c.qkv_bias);
    EXPECT_TRUE(c.tie_word_embeddings);
  }
}

TEST(Model, ShardedAndSingleFileLoadTheSameWay) {
  TempDir dir;
  CausalLM sharded = io::load_causal_lm(fixture_model("llama_sharded"));
  io::save_causal_lm(sharded, dir.path());
  CausalLM single = io::load_causal_lm(dir.path());
  at::NoGradGuard no_grad;
  at::Tensor ids = at::arange(9, at::kLong).unsqueeze(0);
  EXPECT_TRUE(at::equal(sharded->forward(ids), single->forward(ids)));
}

TEST(Hooks, IdentityHeadHookReproducesBaselineExactly) {
  Golden g = load_golden("llama_gqa");
  CausalLM model = io::load_causal_lm(fixture_model("llama_gqa"));
  at::NoGradGuard no_grad;
  at::Tensor base = model->forward(g.input_ids);
  int calls = 0;
  ForwardHooks hooks;
  hooks.head_output = [&](int64_t, const at::Tensor& z) {
    ++calls;
    return z;
  };
  EXPECT_TRUE(at::equal(model->forward(g.input_ids, nullptr, &hooks), base));
  EXPECT_EQ(calls, model->config().n_layer);
}

TEST(Hooks, ZeroingEveryHeadOfALayerRemovesItsAttentionOutput) {
  Golden g = load_golden("llama_gqa");  // no o_proj bias, so o_proj(0) == 0
  CausalLM model = io::load_causal_lm(fixture_model("llama_gqa"));
  at::NoGradGuard no_grad;
  ForwardHooks hooks;
  hooks.head_output = [](int64_t layer, const at::Tensor& z) { return layer == 1 ? at::zeros_like(z) : z; };
  at::Tensor ablated = model->forward(g.input_ids, nullptr, &hooks);
  // By hand: layer 0 as usual, layer 1 without attention (MLP only), then the head.
  at::Tensor h = model->run_layers(model->embed(g.input_ids), 0, 1);
  auto& layer = model->model->layer_list[1];
  h = h + layer->mlp->forward(layer->post_attention_layernorm->forward(h));
  EXPECT_LT(max_abs_diff(ablated, model->final_logits(h)), 1e-6);
  EXPECT_GT(max_abs_diff(ablated, model->forward(g.input_ids)), 1e-3);
}

TEST(Hooks, CapturedResidualRestartsTheForwardAtAnyLayer) {
  Golden g = load_golden("mistral_headdim");
  CausalLM model = io::load_causal_lm(fixture_model("mistral_headdim"));
  at::NoGradGuard no_grad;
  std::vector<at::Tensor> in, out;
  ForwardHooks hooks;
  hooks.residual_in = &in;
  hooks.residual_out = &out;
  at::Tensor full = model->forward(g.input_ids, nullptr, &hooks);
  ASSERT_EQ(in.size(), 2u);
  EXPECT_TRUE(at::equal(out[0], in[1]));
  at::Tensor restarted = model->final_logits(model->run_layers(in[1], 1, 2));
  EXPECT_TRUE(at::equal(restarted, full));
}

TEST(Generate, GreedyWithCacheMatchesArgmaxOfFullForward) {
  CausalLM model = io::load_causal_lm(fixture_model("mistral_headdim"));
  std::vector<int64_t> prompt = {1, 7, 3, 9};
  GenerateOptions opts;
  opts.max_new_tokens = 8;
  opts.stop_at_eos = false;
  GenerateResult r = generate_greedy(model, prompt, opts);
  ASSERT_EQ(r.tokens.size(), 8u);
  at::NoGradGuard no_grad;
  std::vector<int64_t> seq = prompt;
  for (int i = 0; i < 8; ++i) {
    at::Tensor logits = model->forward(at::tensor(seq, at::kLong).unsqueeze(0));
    seq.push_back(logits[0][-1].argmax().item<int64_t>());
  }
  EXPECT_EQ(std::vector<int64_t>(seq.begin() + 4, seq.end()), r.tokens);
}

// ---- strict loading and config errors ----

void copy_fixture(const std::string& name, const std::string& to) {
  std::filesystem::copy(fixture_model(name), to, std::filesystem::copy_options::recursive);
}

TEST(Checkpoint, MissingUnexpectedAndMisShapedTensorsAreListedByName) {
  TempDir dir;
  copy_fixture("llama_gqa", dir.path() + "/m");
  std::string file = dir.path() + "/m/model.safetensors";
  std::vector<std::pair<std::string, at::Tensor>> tensors;
  {
    auto f = io::SafetensorsFile::open(file);
    for (const auto& e : f->entries()) {
      if (e.name == "model.norm.weight") continue;  // missing
      at::Tensor t = f->tensor(e.name).clone();
      if (e.name == "model.layers.0.self_attn.k_proj.weight") t = t.narrow(0, 0, 8).clone();  // mis-shaped
      tensors.emplace_back(e.name, t);
    }
  }
  tensors.emplace_back("model.layers.9.extra.weight", at::zeros({2}));  // unexpected
  io::save_safetensors(file, tensors);
  try {
    io::load_causal_lm(dir.path() + "/m");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find("missing tensors: model.norm.weight"), std::string::npos) << msg;
    EXPECT_NE(msg.find("unexpected tensors: model.layers.9.extra.weight"), std::string::npos) << msg;
    EXPECT_NE(msg.find("model.layers.0.self_attn.k_proj.weight (file [8, 32], model [16, 32])"), std::string::npos) << msg;
  }
}

void edit_config(const std::string& dir, const std::function<void(nlohmann::json&)>& edit) {
  std::string path = dir + "/config.json";
  std::ifstream in(path);
  nlohmann::json j = nlohmann::json::parse(in);
  edit(j);
  std::ofstream(path) << j.dump();
}

// The address ranges /proc/self/maps shows mapped from `file`.
std::vector<std::pair<uintptr_t, uintptr_t>> mappings_of(const std::string& file) {
  std::vector<std::pair<uintptr_t, uintptr_t>> out;
  std::ifstream maps("/proc/self/maps");
  std::string line;
  const std::string path = std::filesystem::canonical(file).string();
  while (std::getline(maps, line)) {
    if (line.size() < path.size() || line.compare(line.size() - path.size(), path.size(), path) != 0) continue;
    uintptr_t lo = 0, hi = 0;
    std::sscanf(line.c_str(), "%lx-%lx", &lo, &hi);
    out.emplace_back(lo, hi);
  }
  return out;
}

TEST(Checkpoint, WeightsInTheStoredDtypeAreTheMappedFileNotACopy) {
  const std::string dir = fixture_model("llama_bf16");
  EXPECT_EQ(io::stored_dtype(dir), at::kBFloat16);
  EXPECT_EQ(io::resolve_weights_dtype("auto", dir), at::kBFloat16);
  EXPECT_EQ(io::resolve_weights_dtype("float32", dir), at::kFloat);
  EXPECT_RAD_ERROR(io::resolve_weights_dtype("int8", dir), "unknown weights dtype \"int8\"");
  EXPECT_RAD_ERROR(io::stored_dtype(fixture_model("no_such_model")), "no_such_model");
  CausalLM held = io::load_causal_lm(dir, at::kBFloat16);
  auto ranges = mappings_of(dir + "/model.safetensors");
  ASSERT_FALSE(ranges.empty()) << "the checkpoint is not mapped while the model lives";
  auto mapped = [&](const at::Tensor& t) {
    auto p = reinterpret_cast<uintptr_t>(t.data_ptr());
    for (const auto& [lo, hi] : ranges)
      if (p >= lo && p + t.nbytes() <= hi) return true;
    return false;
  };
  for (const auto& item : held->named_parameters()) {
    EXPECT_EQ(item.value().scalar_type(), at::kBFloat16) << item.key();
    EXPECT_TRUE(mapped(item.value())) << item.key() << " was copied";
  }
  // Converted on load: a float32 copy, in the process's own memory.
  CausalLM copied = io::load_causal_lm(dir, at::kFloat);
  for (const auto& item : copied->named_parameters()) EXPECT_FALSE(mapped(item.value())) << item.key();
  // Training a mapped model in place writes private pages, never the file.
  at::Tensor before = io::SafetensorsFile::open(dir + "/model.safetensors")->tensor("model.norm.weight").clone();
  {
    at::NoGradGuard no_grad;
    held->model->norm->weight.add_(1.0);
  }
  EXPECT_TRUE(at::equal(io::SafetensorsFile::open(dir + "/model.safetensors")->tensor("model.norm.weight"), before));
}

TEST(Model, WeightsHeldInBf16ComputeInFloat32LikeTheirFloat32Copy) {
  const std::string dir = fixture_model("llama_bf16");
  CausalLM held = io::load_causal_lm(dir, at::kBFloat16);
  held->set_compute_dtype(at::kFloat);
  CausalLM copy = io::load_causal_lm(dir, at::kFloat);
  at::Tensor ids = at::arange(3, 40, at::kLong).remainder(60).unsqueeze(0);
  at::NoGradGuard no_grad;
  at::Tensor a = held->forward(ids), b = copy->forward(ids);
  EXPECT_EQ(a.scalar_type(), at::kFloat);
  EXPECT_LT(max_abs_diff(a, b), 1e-5);
  // The weights went back to bf16 after each layer.
  for (const auto& item : held->named_parameters()) EXPECT_EQ(item.value().scalar_type(), at::kBFloat16) << item.key();
}

TEST(Model, WeightsConvertedPerLayerRefuseGradients) {
  CausalLM held = io::load_causal_lm(fixture_model("llama_bf16"), at::kBFloat16);
  held->set_compute_dtype(at::kFloat);
  at::Tensor ids = at::arange(3, 10, at::kLong).unsqueeze(0);
  EXPECT_RAD_ERROR(held->forward(ids), "run only without gradients");
  for (const auto& item : held->named_parameters()) EXPECT_EQ(item.value().scalar_type(), at::kBFloat16) << item.key();
}

TEST(Checkpoint, UnsupportedArchitectureListsWhatIsSupported) {
  TempDir dir;
  copy_fixture("llama_gqa", dir.path() + "/m");
  edit_config(dir.path() + "/m", [](nlohmann::json& j) { j["architectures"] = {"GPT2LMHeadModel"}; });
  EXPECT_RAD_ERROR(io::load_causal_lm(dir.path() + "/m"),
                   "\"GPT2LMHeadModel\" is not supported (supported: LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM)");
}

TEST(Checkpoint, ConfigFieldErrorsNameTheField) {
  TempDir dir;
  copy_fixture("llama_gqa", dir.path() + "/m");
  edit_config(dir.path() + "/m", [](nlohmann::json& j) { j.erase("hidden_size"); });
  EXPECT_RAD_ERROR(io::load_causal_lm(dir.path() + "/m"), "missing required field \"hidden_size\"");
  edit_config(dir.path() + "/m", [](nlohmann::json& j) {
    j["hidden_size"] = 32;
    j["num_key_value_heads"] = 3;
  });
  EXPECT_RAD_ERROR(io::load_causal_lm(dir.path() + "/m"), "multiple of num_key_value_heads (3)");
  edit_config(dir.path() + "/m", [](nlohmann::json& j) {
    j["num_key_value_heads"] = 2;
    j["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 4.0}};
  });
  EXPECT_RAD_ERROR(io::load_causal_lm(dir.path() + "/m"), "rope_scaling type \"yarn\" is not supported");
  edit_config(dir.path() + "/m", [](nlohmann::json& j) {
    j["rope_scaling"] = nullptr;
    j["vocab_size"] = "many";
  });
  EXPECT_RAD_ERROR(io::load_causal_lm(dir.path() + "/m"), "field \"vocab_size\" must be an integer");
  // An integral float beyond int64 (found by fuzzing: the cast was undefined behaviour).
  edit_config(dir.path() + "/m", [](nlohmann::json& j) { j["vocab_size"] = 2.7777777777e115; });
  EXPECT_RAD_ERROR(io::load_causal_lm(dir.path() + "/m"), "field \"vocab_size\" is out of range");
}

TEST(Checkpoint, ShardIndexCannotEscapeTheDirectory) {
  TempDir dir;
  copy_fixture("llama_sharded", dir.path() + "/m");
  std::string index = dir.path() + "/m/model.safetensors.index.json";
  std::ifstream in(index);
  nlohmann::json j = nlohmann::json::parse(in);
  j["weight_map"]["model.norm.weight"] = "../../etc/passwd";
  std::ofstream(index) << j.dump();
  EXPECT_RAD_ERROR(io::load_causal_lm(dir.path() + "/m"), "not a plain file name");
}

TEST(Checkpoint, MissingModelFilesAreReported) {
  TempDir dir;
  std::filesystem::create_directories(dir.path() + "/m");
  std::filesystem::copy(fixture_model("llama_gqa") + "/config.json", dir.path() + "/m/config.json");
  EXPECT_RAD_ERROR(io::load_causal_lm(dir.path() + "/m"), "no model.safetensors");
  EXPECT_RAD_ERROR(io::load_causal_lm(dir.path() + "/nothing"), "no such file");
}

}  // namespace
}  // namespace rad::test
