// Head ablation: exactness of residual reuse, determinism, selection, and plan validation.
#include <ATen/ATen.h>

#include <fstream>

#include "rad/heads/ablation.h"
#include "rad/heads/baselines.h"
#include "rad/heads/head_plan.h"
#include "rad/heads/model_hash.h"
#include "rad/io/checkpoint.h"
#include "test_util.h"

namespace rad::test {
namespace {

// Examples whose answer is the clean model's own greedy prediction, so the unablated model scores
// 100% and ablating a head changes some answers: a probe with signal even for random weights.
std::vector<tasks::EncodedExample> self_consistent_probe(CausalLM& model, int64_t n, uint64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  std::vector<tasks::EncodedExample> out;
  at::NoGradGuard no_grad;
  for (int64_t i = 0; i < n; ++i) {
    int64_t T = 6 + i % 7;
    at::Tensor ids = at::randint(2, model->config().n_vocab, {T}, gen, at::TensorOptions().dtype(at::kLong));
    int64_t next = model->forward(ids.unsqueeze(0))[0][-1].argmax().item<int64_t>();
    tasks::EncodedExample e;
    e.ids.assign(ids.data_ptr<int64_t>(), ids.data_ptr<int64_t>() + T);
    e.ids.push_back(next);
    e.answers.push_back({T, T + 1});
    out.push_back(e);
  }
  return out;
}

TEST(Heads, SweepWithResidualReuseEqualsFullForwardAblation) {
  CausalLM model = io::load_causal_lm(fixture_model("llama_gqa"));
  auto probe = self_consistent_probe(model, 40, 3);
  for (std::string mode : {"zero", "mean"}) {
    HeadAblator ablator(model, probe, mode, 8);
    EXPECT_DOUBLE_EQ(ablator.accuracy({}), 1.0);
    SweepResult r = ablator.sweep();
    EXPECT_DOUBLE_EQ(r.teacher_accuracy, 1.0);
    ASSERT_EQ(r.ranked.size(), 8u);
    double total_drop = 0;
    for (const auto& s : r.ranked) {
      EXPECT_DOUBLE_EQ(s.accuracy_without, ablator.accuracy({{s.layer, s.head}})) << mode << " " << s.layer << "," << s.head;
      total_drop += s.score;
    }
    EXPECT_GT(total_drop, 0.0) << "ablating heads changes some answers";
  }
}

TEST(Heads, RestartingFromTheCapturedResidualIsExact) {
  CausalLM model = io::load_causal_lm(fixture_model("llama_gqa"));
  HeadAblator ablator(model, self_consistent_probe(model, 4, 1), "zero", 4);
  at::NoGradGuard no_grad;
  at::Tensor ids = at::arange(3, 15, at::kLong).unsqueeze(0);
  std::vector<at::Tensor> in;
  ForwardHooks capture;
  capture.residual_in = &in;
  model->forward(ids, nullptr, &capture);
  ForwardHooks hooks = ablator.hooks_for({{1, 2}});
  at::Tensor full = model->forward(ids, nullptr, &hooks);
  at::Tensor restarted = model->final_logits(model->run_layers(in[1], 1, 2, nullptr, &hooks));
  EXPECT_TRUE(at::equal(full, restarted));
}

TEST(Heads, SameSeedSameRankingAndTiesBreakByPosition) {
  CausalLM model = io::load_causal_lm(fixture_model("qwen2_bias"));
  auto probe = self_consistent_probe(model, 24, 5);
  SweepResult a = HeadAblator(model, probe, "zero", 8).sweep();
  SweepResult b = HeadAblator(model, self_consistent_probe(model, 24, 5), "zero", 5).sweep();
  ASSERT_EQ(a.ranked.size(), b.ranked.size());
  for (size_t i = 0; i < a.ranked.size(); ++i) {
    EXPECT_EQ(a.ranked[i].layer, b.ranked[i].layer);
    EXPECT_EQ(a.ranked[i].head, b.ranked[i].head);
    EXPECT_EQ(a.ranked[i].rank, static_cast<int64_t>(i + 1));
  }
  std::vector<HeadScore> tied(3);
  tied[0] = {1, 0, 0, 0.5, 0.2, 0};
  tied[1] = {0, 3, 0, 0.5, 0.2, 0};
  tied[2] = {0, 1, 0, 0.4, 0.3, 0};
  auto ranked = rank_heads(tied);
  EXPECT_EQ(ranked[0].layer, 0);
  EXPECT_EQ(ranked[0].head, 1);
  EXPECT_EQ(ranked[1].layer, 0);
  EXPECT_EQ(ranked[1].head, 3);
  EXPECT_EQ(ranked[2].layer, 1);
  EXPECT_EQ(ranked[2].head, 0);
}

TEST(Heads, SelectorsPickTheTopOfTheRanking) {
  std::vector<HeadScore> scores;
  for (int64_t i = 0; i < 10; ++i) scores.push_back({i / 5, i % 5, 0, 0, 0.1 * i, 0});
  auto ranked = rank_heads(scores);
  HeadSelector budget;
  budget.budget = 2;
  EXPECT_EQ(select_heads(ranked, budget), (HeadSet{{1, 4}, {1, 3}}));
  HeadSelector fraction;
  fraction.fraction = 0.25;  // ceil(2.5) = 3
  EXPECT_EQ(select_heads(ranked, fraction).size(), 3u);
  HeadSelector threshold;
  threshold.threshold = 0.65;
  EXPECT_EQ(select_heads(ranked, threshold), (HeadSet{{1, 4}, {1, 3}, {1, 2}}));
  HeadSelector none;
  EXPECT_RAD_ERROR(select_heads(ranked, none), "exactly one of --budget, --fraction or --threshold");
}

TEST(Baselines, RandomHeadsAreSeededDistinctAndInRange) {
  ModelConfig c;
  c.n_layer = 6;
  c.n_head = 8;
  c.n_head_kv = 4;
  HeadPlan a = random_heads_plan(c, 5, 1), b = random_heads_plan(c, 5, 1), d = random_heads_plan(c, 5, 2);
  EXPECT_EQ(a.kept_heads, b.kept_heads);
  EXPECT_NE(a.kept_heads, d.kept_heads);
  ASSERT_EQ(a.size(), 5);
  EXPECT_EQ(HeadSet(a.kept_heads.begin(), a.kept_heads.end()).size(), 5u);
  for (const auto& [l, h] : a.kept_heads) {
    EXPECT_TRUE(l >= 0 && l < 6 && h >= 0 && h < 8);
  }
  EXPECT_RAD_ERROR(random_heads_plan(c, 49, 0), "k must be in [0, 48]");
}

TEST(Baselines, LayerwisePlansKeepWholeEvenlySpacedLayers) {
  ModelConfig c;
  c.n_layer = 6;
  c.n_head = 4;
  c.n_head_kv = 2;
  // 25% of 6 layers = 1.5 -> 2 layers (1/3 kept is as close as 1/6 to 1/4; llround rounds half up),
  // the centres of two blocks of 3: layers 1 and 4.
  HeadPlan q = layerwise_plan(c, 0.25);
  EXPECT_EQ(q.selector["layers"], nlohmann::json({1, 4}));
  EXPECT_EQ(q.size(), 2 * 4);
  // 50%: 3 layers, centres of blocks of 2: 1, 3, 5.
  HeadPlan h = layerwise_plan(c, 0.5);
  EXPECT_EQ(h.selector["layers"], nlohmann::json({1, 3, 5}));
  EXPECT_DOUBLE_EQ(h.selector["kept_fraction"].get<double>(), 0.5);
  for (int64_t l : {1, 3, 5}) EXPECT_EQ(h.heads_in_layer(l), (std::vector<int64_t>{0, 1, 2, 3}));
  EXPECT_TRUE(h.heads_in_layer(0).empty());
  EXPECT_RAD_ERROR(layerwise_plan(c, 0.0), "fraction must be in (0, 1]");
}

TEST(Baselines, LayerwisePlanAtTheHybridsCacheCountsKvGroups) {
  ModelConfig c;
  c.n_layer = 6;
  c.n_head = 4;
  c.n_head_kv = 2;  // query heads {0, 1} share KV group 0, {2, 3} group 1
  HeadPlan hybrid;
  // Five query heads but three (layer, group) pairs cached: (0,0), (2,1), (5,0). A whole layer
  // caches two groups, so the nearest whole-layer plan keeps round(3 / 2) = 2 layers: 1 and 4.
  hybrid.kept_heads = {{0, 0}, {0, 1}, {2, 2}, {2, 3}, {5, 1}};
  HeadPlan same = layerwise_plan_same_cache(c, hybrid);
  EXPECT_EQ(same.selector["layers"], nlohmann::json({1, 4}));
  EXPECT_EQ(same.selector["same_cache_as"]["kv_groups"], 3);
  EXPECT_EQ(same.selector["same_cache_as"]["kept_heads"], 5);
  // One kept head is less than a layer's cache: still one whole layer (a layer-wise plan keeps one).
  HeadPlan one;
  one.kept_heads = {{3, 1}};
  EXPECT_EQ(layerwise_plan_same_cache(c, one).selector["layers"], nlohmann::json({3}));
  // No kept head at all: also one layer, never zero.
  EXPECT_EQ(layerwise_plan_same_cache(c, HeadPlan{}).size(), 4);
}

TEST(HeadPlan, RoundTripsAndListsKvGroups) {
  CausalLM model = io::load_causal_lm(fixture_model("llama_gqa"));  // 4 heads, 2 KV heads
  const ModelConfig& c = model->config();
  HeadPlan plan;
  plan.kept_heads = {{0, 1}, {1, 0}, {1, 3}};
  plan.model_hash = model_hash(model);
  TempDir dir;
  plan.save(dir.file("plan.json"), c);
  HeadPlan back = HeadPlan::load(dir.file("plan.json"), c, model_hash(model));
  EXPECT_EQ(back.kept_heads, plan.kept_heads);
  EXPECT_EQ(back.kv_groups(0, c), (std::vector<int64_t>{0}));
  EXPECT_EQ(back.kv_groups(1, c), (std::vector<int64_t>{0, 1}));
}

TEST(HeadPlan, PlansForAnotherModelAreRefused) {
  CausalLM model = io::load_causal_lm(fixture_model("llama_gqa"));
  const ModelConfig& c = model->config();
  using nlohmann::json;
  EXPECT_RAD_ERROR(HeadPlan::from_json(json{{"kept_heads", {{2, 0}}}}, c, "p.json"),
                   "layer 2 out of range (the model has 2 layers)");
  EXPECT_RAD_ERROR(HeadPlan::from_json(json{{"kept_heads", {{0, 4}}}}, c, "p.json"), "head 4 out of range");
  EXPECT_RAD_ERROR(HeadPlan::from_json(json{{"kept_heads", {{0, 1}, {0, 1}}}}, c, "p.json"), "listed twice");
  EXPECT_RAD_ERROR(HeadPlan::from_json(json{{"kept_heads", {"0,1"}}}, c, "p.json"), "is not [layer, head]");
  EXPECT_RAD_ERROR(HeadPlan::from_json(json{{"kept_heads", json::array()}, {"n_head", 32}}, c, "p.json"),
                   "\"n_head\" is 32 but the model has 4");
  EXPECT_RAD_ERROR(HeadPlan::from_json(json{{"kept_heads", json::array()}, {"model_hash", "fnv1a64:0"}}, c, "p.json",
                                       model_hash(model)),
                   "does not match the model");
  // Hand-written plans with only kept_heads work.
  EXPECT_EQ(HeadPlan::from_json(json{{"kept_heads", {{1, 2}}}}, c, "p.json").size(), 1);
}

TEST(HeadPlan, ModelHashChangesWithTheWeights) {
  CausalLM a = io::load_causal_lm(fixture_model("llama_gqa"));
  CausalLM b = io::load_causal_lm(fixture_model("llama_gqa"));
  EXPECT_EQ(model_hash(a), model_hash(b));
  {
    at::NoGradGuard no_grad;
    b->model->norm->weight[0] += 1e-3;
  }
  EXPECT_NE(model_hash(a), model_hash(b));
}

}  // namespace
}  // namespace rad::test
