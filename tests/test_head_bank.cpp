// The head bank (rad/distill/head_bank.h), the SSM input step, and the selection by sufficiency
// (rad/heads/sufficiency.h).
#include <ATen/ATen.h>

#include "rad/distill/head_bank.h"
#include "rad/distill/init_from_attention.h"
#include "rad/heads/sufficiency.h"
#include "rad/io/checkpoint.h"
#include "rad/model/hybrid_mixer.h"
#include "rad/model/ssm.h"
#include "test_util.h"

namespace rad::test {
namespace {

HybridConfig bank_config(const ModelConfig& base, bool conv, bool gate, bool bias, bool input_step) {
  HybridConfig hc;
  hc.base = base;
  hc.ssm.d_state = 8;
  hc.ssm.conv = conv;
  hc.ssm.gate = gate;
  hc.ssm.bias = bias;
  hc.ssm.input_step = input_step;
  hc.ssm.chunk_size = 4;
  return hc;
}

void expect_same_parameters(CausalLM& a, CausalLM& b, const std::string& what) {
  auto pa = a->named_parameters();
  auto pb = b->named_parameters();
  ASSERT_EQ(pa.size(), pb.size()) << what;
  for (const auto& item : pa) {
    const at::Tensor* other = pb.find(item.key());
    ASSERT_NE(other, nullptr) << what << ": " << item.key();
    EXPECT_TRUE(at::equal(item.value(), *other)) << what << ": " << item.key();
  }
}

TEST(HeadBank, AnUntrainedBankAssemblesExactlyWhatConvertBuilds) {
  CausalLM teacher = io::load_causal_lm(fixture_model("llama_gqa"));  // 2 layers x 4 heads, 2 KV groups
  for (bool conv : {false, true})
    for (bool input_step : {false, true}) {
      HybridConfig bc = bank_config(teacher->config(), conv, /*gate=*/conv, /*bias=*/!conv, input_step);
      CausalLM bank = convert_from_teacher(teacher, bc, SsmInit::kAttention);
      for (const auto& kept : std::vector<std::vector<std::pair<int64_t, int64_t>>>{
               {}, {{0, 1}}, {{0, 0}, {0, 3}, {1, 2}}, {{1, 0}, {1, 1}, {1, 2}, {1, 3}}}) {
        HybridConfig hc = bc;
        hc.plan.kept_heads = kept;
        CausalLM converted = convert_from_teacher(teacher, hc, SsmInit::kAttention);
        CausalLM assembled = assemble_plan(teacher, bank, bc, hc.plan);
        expect_same_parameters(converted, assembled,
                               fmt::format("conv {} input_step {} kept {}", conv, input_step, kept.size()));
      }
    }
}

TEST(HeadBank, EachAssembledSsmHeadComputesItsBankHead) {
  CausalLM teacher = io::load_causal_lm(fixture_model("llama_gqa"));
  HybridConfig bc = bank_config(teacher->config(), /*conv=*/true, /*gate=*/true, /*bias=*/true, /*input_step=*/true);
  CausalLM bank = convert_from_teacher(teacher, bc, SsmInit::kAttention);
  {  // a "trained" bank: every SSM parameter moved
    at::NoGradGuard no_grad;
    at::manual_seed(3);
    for (auto& item : bank->named_parameters())
      if (item.key().find(".ssm.") != std::string::npos) item.value().add_(at::randn_like(item.value()) * 0.2);
  }
  HeadPlan plan;
  plan.kept_heads = {{0, 2}, {1, 0}, {1, 3}};
  CausalLM hybrid = assemble_plan(teacher, bank, bc, plan);
  at::NoGradGuard no_grad;
  at::Tensor u = at::randn({2, 9, teacher->config().d_model});
  for (int64_t l = 0; l < 2; ++l) {
    auto* hm = dynamic_cast<HybridMixer*>(hybrid->model->layer_list[l]->self_attn.get());
    auto* bm = dynamic_cast<HybridMixer*>(bank->model->layer_list[l]->self_attn.get());
    at::Tensor yh = hm->ssm->forward(u, nullptr), yb = bm->ssm->forward(u, nullptr);  // [B, T, Hs, P]
    for (size_t i = 0; i < hm->ssm_heads.size(); ++i)
      // Same weights; only the projections' output widths differ (BLAS may sum in another order).
      EXPECT_LT((yh.select(2, i) - yb.select(2, hm->ssm_heads[i])).abs().max().item<double>(), 1e-5)
          << "layer " << l << " head " << hm->ssm_heads[i];
  }
}

TEST(HeadBank, AssemblyRefusesABankWithOtherSsmOptions) {
  CausalLM teacher = io::load_causal_lm(fixture_model("llama_gqa"));
  HybridConfig bc = bank_config(teacher->config(), true, false, false, true);
  CausalLM bank = convert_from_teacher(teacher, bc, SsmInit::kAttention);
  HybridConfig other = bank_config(teacher->config(), false, false, false, true);
  other.plan.kept_heads = {{0, 0}};
  CausalLM hybrid = convert_from_teacher(teacher, other, SsmInit::kAttention);
  EXPECT_RAD_ERROR(assemble_from_bank(hybrid, bank), "not the bank's");
  HybridConfig keeps = bc;
  keeps.plan.kept_heads = {{0, 0}};
  EXPECT_RAD_ERROR(check_bank_matches(keeps, teacher->config(), "bank"), "not a head bank");
}

// The per-head loss against its definition, and each head's term depending on its own parameters only.
TEST(HeadBank, HeadAlignmentLossIsTheSumOfIndependentPerHeadTerms) {
  CausalLM teacher = io::load_causal_lm(fixture_model("llama_gqa"));
  const ModelConfig& c = teacher->config();
  HybridConfig bc = bank_config(c, true, true, false, true);
  CausalLM bank = convert_from_teacher(teacher, bc, SsmInit::kAttention);
  at::Tensor ids = (at::arange(24, at::kLong) * 7 + 3).remainder(c.n_vocab).view({2, 12});
  TeacherHeadOutputs t = capture_teacher_heads(teacher, ids);
  ASSERT_EQ(t.heads.size(), 2u);
  HeadErrorSums sums;
  at::Tensor loss;
  {
    at::NoGradGuard no_grad;
    loss = head_alignment_loss(bank, t, 0, &sums);
  }
  // By hand: layer l, head h: mean over tokens of ||W_o[:, h] (y_h - z_h)||.
  double expected = 0;
  {
    at::NoGradGuard no_grad;
    for (int64_t l = 0; l < c.n_layer; ++l) {
      DecoderLayer& layer = bank->model->layer_list[l];
      auto* m = dynamic_cast<HybridMixer*>(layer->self_attn.get());
      at::Tensor y = m->ssm->forward(layer->input_layernorm->forward(t.residual_in[l]), nullptr);
      at::Tensor w = m->o_proj->weight.view({c.d_model, c.n_head, c.d_head});
      for (int64_t h = 0; h < c.n_head; ++h) {
        at::Tensor contrib = at::matmul(y.select(2, h) - t.heads[l].select(2, h), w.select(1, h).t());  // [B, T, d]
        double term = contrib.norm(2, -1).mean().item<double>();
        expected += term;
        EXPECT_NEAR(sums.error[l][h].item<double>() / 24.0, term, 1e-5);
      }
    }
  }
  EXPECT_NEAR(loss.item<double>(), expected, 1e-4);
  // Moving layer 1 head 2's parameters changes no other head's error.
  {
    at::NoGradGuard no_grad;
    auto* m = dynamic_cast<HybridMixer*>(bank->model->layer_list[1]->self_attn.get());
    const int64_t P = c.d_head;
    m->ssm->x_proj->weight.narrow(0, 2 * P, P).add_(0.5);
    m->ssm->a_proj->bias.narrow(0, 2, 1).add_(1.0);
  }
  HeadErrorSums moved;
  {
    at::NoGradGuard no_grad;
    head_alignment_loss(bank, t, 0, &moved);
  }
  for (int64_t l = 0; l < c.n_layer; ++l)
    for (int64_t h = 0; h < c.n_head; ++h) {
      const double a = sums.error[l][h].item<double>(), b = moved.error[l][h].item<double>();
      if (l == 1 && h == 2)
        EXPECT_GT(std::abs(a - b), 1e-3);
      else
        EXPECT_NEAR(a, b, 1e-6) << l << "," << h;
    }
}

// The input step against a hand-written recurrence: H_t = a_t H_{t-1} + (1 - a_t) x_t B_t^T,
// y_t = H_t C_t + D x_t, then the gate; conv on [x, B, C] first.
TEST(SsmInputStep, MatchesAReferenceRecurrenceInEveryForm) {
  CausalLM teacher = io::load_causal_lm(fixture_model("llama_gqa"));
  const ModelConfig& c = teacher->config();
  for (bool conv : {false, true}) {
    SsmOptions o;
    o.d_state = 4;
    o.conv = conv;
    o.gate = true;
    o.input_step = true;
    o.chunk_size = 3;
    SsmHeads heads(c, o, 3);
    at::manual_seed(5);
    {
      at::NoGradGuard no_grad;
      for (auto& p : heads->parameters()) p.normal_(0, 0.3);
    }
    at::NoGradGuard no_grad;
    const int64_t T = 7, H = 3, P = c.d_head, N = 4;
    at::Tensor u = at::randn({1, T, c.d_model});
    at::Tensor y = heads->forward(u, nullptr);  // sequence form
    // Reference.
    at::Tensor xs = heads->x_proj->forward(u)[0], bs = heads->B_proj->forward(u)[0], cs = heads->C_proj->forward(u)[0];
    if (conv) {
      at::Tensor xbc = at::cat({xs, bs, cs}, -1);  // [T, C]
      at::Tensor out = at::zeros_like(xbc);
      const int64_t W = o.conv_width;
      for (int64_t t = 0; t < T; ++t)
        for (int64_t k = 0; k < W; ++k) {
          const int64_t src = t - (W - 1 - k);
          if (src >= 0) out[t] += xbc[src] * heads->conv_weight.select(1, k);
        }
      xs = out.narrow(-1, 0, H * P);
      bs = out.narrow(-1, H * P, H * N);
      cs = out.narrow(-1, H * P + H * N, H * N);
    }
    at::Tensor alpha = at::exp(-at::softplus(heads->a_proj->forward(u)[0]));  // [T, H]
    at::Tensor z = heads->z_proj->forward(u)[0];
    for (int64_t h = 0; h < H; ++h) {
      at::Tensor S = at::zeros({P, N});
      for (int64_t t = 0; t < T; ++t) {
        at::Tensor x = xs[t].narrow(0, h * P, P), b = bs[t].narrow(0, h * N, N), cc = cs[t].narrow(0, h * N, N);
        double a = alpha[t][h].item<double>();
        S = a * S + (1 - a) * at::outer(x, b);
        at::Tensor ref = (at::matmul(S, cc) + heads->D[h] * x) * at::silu(z[t].narrow(0, h * P, P));
        EXPECT_TRUE(at::allclose(y[0][t][h], ref, 1e-5, 1e-5)) << "conv " << conv << " head " << h << " t " << t;
      }
    }
    // Token by token with a cache (the decode path) gives the same outputs.
    HybridCache cache;
    for (int64_t t = 0; t < T; ++t) {
      at::Tensor yt = heads->forward(u.narrow(1, t, 1), &cache);
      EXPECT_TRUE(at::allclose(yt[0][0], y[0][t], 1e-5, 1e-5)) << "step " << t;
    }
  }
}

TEST(HeadDecayInit, StepsAreLogSpacedByHeadIndexWhateverThePlan) {
  DecayInit d;
  d.dt_min = 1e-3;
  d.dt_max = 1.0;
  at::Tensor dt = head_decay_steps(4, d);
  EXPECT_NEAR(dt[0].item<double>(), 1e-3, 1e-12);
  EXPECT_NEAR(dt[1].item<double>(), 1e-2, 1e-12);
  EXPECT_NEAR(dt[3].item<double>(), 1.0, 1e-12);
  d.dt_max = 1e-4;
  EXPECT_RAD_ERROR(head_decay_steps(4, d), "dt_min");
}

// A synthetic sufficiency function: heads a = (0,1) and b = (1,2) together solve the probe; the decoy
// d = (0,0) alone scores best and ranks first but is not needed. The answers' log-probability rises
// with each of a and b even while the accuracy does not (a circuit half-built).
ProbeScore synthetic_score(const HeadSet& s) {
  const bool a = s.count({0, 1}) > 0, b = s.count({1, 2}) > 0, d = s.count({0, 0}) > 0;
  int64_t correct = a && b ? 98 : d ? 50 + ((a || b) ? 10 : 0) : 20 * (a + b);
  return {{correct, 100}, -3.0 + 1.0 * a + 1.0 * b + 1.5 * d};
}

TEST(Sufficiency, GreedyWithPruningFindsTheSmallestSufficientSet) {
  std::vector<std::pair<int64_t, int64_t>> ranked = {{0, 0}, {0, 1}, {1, 2}, {1, 3}, {0, 2}};
  SufficiencyOptions o;
  o.candidates = 4;
  o.max_heads = 4;
  SufficiencyResult r = select_sufficient_set(ranked, 0.97, synthetic_score, o);
  EXPECT_TRUE(r.sufficient);
  EXPECT_EQ(r.chosen, (HeadSet{{0, 1}, {1, 2}}));
  EXPECT_EQ(r.chosen_accuracy.correct, 98);
  // The path: add the decoy, then a, then b (sufficient), then drop the decoy.
  ASSERT_EQ(r.path.size(), 4u);
  EXPECT_EQ(r.path[0].head, std::make_pair(int64_t{0}, int64_t{0}));
  EXPECT_EQ(r.path[3].action, "drop");
  EXPECT_EQ(r.path[3].head, std::make_pair(int64_t{0}, int64_t{0}));
  EXPECT_EQ(r.to_json()["k"], 2);
}

TEST(Sufficiency, WithoutASufficientSetTakesTheSmallestNearTheBestAndSaysSo) {
  std::vector<std::pair<int64_t, int64_t>> ranked = {{0, 0}, {0, 1}, {1, 2}};
  auto capped = [](const HeadSet& s) {  // never above 60%, reached with one head
    return ProbeScore{{s.empty() ? 5 : 60, 100}, s.empty() ? -2.0 : -1.0};
  };
  SufficiencyOptions o;
  o.max_heads = 3;
  SufficiencyResult r = select_sufficient_set(ranked, 0.97, capped, o);
  EXPECT_FALSE(r.sufficient);
  EXPECT_EQ(r.chosen.size(), 1u);
  // Candidates beyond the pool are never tried.
  o.candidates = 1;
  SufficiencyResult one = select_sufficient_set(ranked, 0.97, synthetic_score, o);
  EXPECT_EQ(one.chosen, (HeadSet{{0, 0}}));
}

TEST(Sufficiency, WalkingTheRankingThenPruningFindsTheSmallestSufficientSet) {
  // a = (0,1), the decoy d = (0,0), then b = (1,2): the walk reaches {a, d, b}; pruning drops d.
  std::vector<std::pair<int64_t, int64_t>> ranked = {{0, 1}, {0, 0}, {1, 2}, {1, 3}};
  SufficiencyOptions o;
  o.max_heads = 4;
  SufficiencyResult r = walk_ranking_and_prune(ranked, 0.97, synthetic_score, o);
  EXPECT_TRUE(r.sufficient);
  EXPECT_EQ(r.chosen, (HeadSet{{0, 1}, {1, 2}}));
  // Three prefixes; pass 1 tries three removals (drops d); pass 2 tries {a} (new) and skips {b}
  // (already failed); nothing more drops.
  EXPECT_EQ(r.evaluations, 3 + 3 + 1);
  ASSERT_EQ(r.path.size(), 4u);
  EXPECT_EQ(r.path[3].action, "drop");
  EXPECT_EQ(r.path[3].head, std::make_pair(int64_t{0}, int64_t{0}));
  // No prefix within max_heads suffices: the smallest within 95% of the best prefix, not sufficient.
  o.max_heads = 2;
  SufficiencyResult short_walk = walk_ranking_and_prune(ranked, 0.97, synthetic_score, o);
  EXPECT_FALSE(short_walk.sufficient);
  EXPECT_EQ(short_walk.chosen, (HeadSet{{0, 0}, {0, 1}}));
}

// The walk can start where the assembled (undistilled) top-k curve first rises above the no-heads
// level: the smaller prefixes are added unscored (recorded as "assembled") and pruning still tries
// dropping their heads, so the smallest set is found with fewer scored prefixes.
TEST(Sufficiency, TheWalkStartsWhereTheAssembledCurveLeavesTheNoHeadsLevel) {
  // d = (0,0) is a decoy; the lookup needs a = (0,1) and b = (1,2).
  std::vector<std::pair<int64_t, int64_t>> ranked = {{0, 0}, {0, 1}, {1, 2}, {1, 3}};
  const std::vector<tasks::Accuracy> assembled = {{2, 100}, {2, 100}, {3, 100}, {40, 100}, {70, 100}};
  EXPECT_EQ(first_k_above_no_heads(assembled), 3);
  EXPECT_EQ(first_k_above_no_heads({{2, 100}, {4, 100}, {6, 100}}), 1);  // within the noise: from top-1
  EXPECT_EQ(first_k_above_no_heads({}), 1);
  SufficiencyOptions o;
  o.max_heads = 4;
  SufficiencyResult r = walk_ranking_and_prune(ranked, 0.97, synthetic_score, o, nullptr, assembled);
  EXPECT_TRUE(r.sufficient);
  EXPECT_EQ(r.chosen, (HeadSet{{0, 1}, {1, 2}}));
  // One scored prefix (top-3); pass 1 tries three removals (drops d); pass 2 tries {a} and {b}.
  EXPECT_EQ(r.evaluations, 1 + 3 + 2);
  ASSERT_EQ(r.path.size(), 4u);
  EXPECT_EQ(r.path[0].judged_by, "assembled");
  EXPECT_EQ(r.path[0].accuracy.correct, 2);  // top-1's assembled score
  EXPECT_EQ(r.path[1].judged_by, "assembled");
  EXPECT_EQ(r.path[2].judged_by, "");
  EXPECT_EQ(r.path[2].accuracy.correct, 98);
  EXPECT_EQ(r.path[3].action, "drop");
  EXPECT_EQ(r.path[3].head, std::make_pair(int64_t{0}, int64_t{0}));
  EXPECT_EQ(r.to_json()["path"][0]["judged_by"], "assembled");
  // --walk-from 2: top-2 scored first (60%, not sufficient), then top-3.
  o.walk_from = 2;
  SufficiencyResult from_two = walk_ranking_and_prune(ranked, 0.97, synthetic_score, o, nullptr, assembled);
  EXPECT_EQ(from_two.chosen, r.chosen);
  EXPECT_EQ(from_two.evaluations, 2 + 3 + 2);
  // --walk-from 1 is the plain walk; a start beyond max_heads is capped at it.
  o.walk_from = 9;
  o.max_heads = 3;
  SufficiencyResult capped = walk_ranking_and_prune(ranked, 0.97, synthetic_score, o, nullptr, assembled);
  EXPECT_EQ(capped.chosen, r.chosen);
  EXPECT_EQ(capped.evaluations, 1 + 3 + 2);
  o.walk_from = -1;
  EXPECT_THROW(walk_ranking_and_prune(ranked, 0.97, synthetic_score, o), Error);
}

// A short-KD proxy is not monotone: a head can hurt without a partner. Here D spoils the lookup
// unless X is kept, so dropping X fails while D is in the set and succeeds once D is gone; one
// latest-first pass would stop at {A, B, C, X}, a second pass reaches {A, B, C}.
TEST(Sufficiency, PruningRepeatsPassesUntilNothingDrops) {
  const std::pair<int64_t, int64_t> A{0, 0}, B{0, 1}, C{1, 0}, D{1, 1}, X{2, 0};
  std::vector<std::pair<int64_t, int64_t>> ranked = {A, B, D, C, X, {2, 1}};
  auto score = [&](const HeadSet& s) {
    const bool lookup = s.count(A) && s.count(B) && s.count(C);
    const bool spoiled = s.count(D) && !s.count(X);
    return ProbeScore{{lookup && !spoiled ? 95 : 10, 100}, lookup ? -1.0 : -3.0};
  };
  SufficiencyOptions o;
  o.max_heads = 6;
  SufficiencyResult r = walk_ranking_and_prune(ranked, 0.97, score, o);
  EXPECT_TRUE(r.sufficient);
  EXPECT_EQ(r.chosen, (HeadSet{A, B, C}));
  ASSERT_EQ(r.path.size(), 5u + 2u);  // five prefixes, then drop D (pass 1) and X (pass 2)
  EXPECT_EQ(r.path[5].head, D);
  EXPECT_EQ(r.path[6].head, X);
}

// The second pruning at the students' budget: the short proxy leaves {A, B, C, X} (it scores {A, B,
// C} at 78, one short of the bar at 0.95 x 84 = 79.8), the budget proxy gives {A, B, C} 82 and every
// 2-head set noise. Only trials whose short score reaches the floor go to the (costly) budget proxy:
// {A, B, C} does; the 2-head sets (10) do not and are refused by their short score.
TEST(Sufficiency, PruningAtTheStudentsBudgetDropsWhatTheShortProxyMissedAndOnlyEscalatesNearTheBar) {
  const std::pair<int64_t, int64_t> A{0, 0}, B{0, 1}, C{1, 0}, X{2, 0};
  std::vector<std::pair<int64_t, int64_t>> ranked = {A, B, C, X, {2, 1}};
  auto short_proxy = [&](const HeadSet& s) {
    const bool abc = s.count(A) && s.count(B) && s.count(C);
    return ProbeScore{{abc ? (s.count(X) ? 85 : 78) : 10, 100}, abc ? -1.0 : -3.0};
  };
  int64_t budget_calls = 0;
  auto budget_proxy = [&](const HeadSet& s) {
    ++budget_calls;
    const bool abc = s.count(A) && s.count(B) && s.count(C);
    return ProbeScore{{abc ? 82 : 5, 100}, abc ? -0.8 : -3.0};
  };
  SufficiencyOptions o;
  o.max_heads = 5;
  SufficiencyResult walked = walk_ranking_and_prune(ranked, 0.84, short_proxy, o);
  ASSERT_TRUE(walked.sufficient);
  EXPECT_EQ(walked.chosen, (HeadSet{A, B, C, X}));
  SufficiencyResult r = prune_at_budget(walked, short_proxy, budget_proxy, "budget", o);
  EXPECT_EQ(r.chosen, (HeadSet{A, B, C}));
  EXPECT_EQ(r.chosen_accuracy.correct, 82);
  EXPECT_TRUE(r.sufficient);
  EXPECT_EQ(budget_calls, 1);  // only {A, B, C}; the 2-head sets stayed below the floor
  // Trials: drop X (budget, accepted); then pass 1 on {A, B, C} refuses C, B, A by the short proxy;
  // pass 2 is never run (nothing dropped in pass 1).
  ASSERT_EQ(r.budget_path.size(), 4u);
  EXPECT_EQ(r.budget_path[0].action, "drop");
  EXPECT_EQ(r.budget_path[0].head, X);
  EXPECT_EQ(r.budget_path[0].judged_by, "budget");
  for (size_t i = 1; i < 4; ++i) {
    EXPECT_EQ(r.budget_path[i].action, "keep");
    EXPECT_EQ(r.budget_path[i].judged_by, "short");
  }
  EXPECT_EQ(r.to_json()["budget_path"].size(), 4u);
  // With the floor at 0 every trial goes to the budget proxy; a fallback choice is left alone.
  o.budget_floor = 0;
  budget_calls = 0;
  prune_at_budget(walked, short_proxy, budget_proxy, "budget", o);
  EXPECT_EQ(budget_calls, 4);
  SufficiencyResult fallback = walked;
  fallback.sufficient = false;
  EXPECT_EQ(prune_at_budget(fallback, short_proxy, budget_proxy, "budget", o).chosen, walked.chosen);
}

// Proxy students are cached per kept set: two sets of the same size must never share a cache entry
// (pruning scores size-k sets after the walk scored another size-k set).
TEST(Sufficiency, ProxyCacheKeyIdentifiesTheSetNotItsSize) {
  const HeadSet a = {{0, 4}, {2, 2}, {3, 3}};
  const HeadSet b = {{0, 4}, {2, 3}, {3, 3}};
  const HeadSet a_other_order = {{3, 3}, {0, 4}, {2, 2}};
  EXPECT_EQ(head_set_key(a), "L0H4-L2H2-L3H3");
  EXPECT_NE(head_set_key(a), head_set_key(b));
  EXPECT_EQ(head_set_key(a), head_set_key(a_other_order));
  EXPECT_EQ(head_set_key({}), "none");
}

TEST(HeadFraction, OneRoundingRuleRoundsUp) {
  EXPECT_EQ(heads_for_fraction(0.03, 48), 2);   // 1.44 -> 2 (lround would give 1)
  EXPECT_EQ(heads_for_fraction(0.25, 48), 12);  // exact products stay
  EXPECT_EQ(heads_for_fraction(0.02, 270), 6);  // 5.4 -> 6
  EXPECT_EQ(heads_for_fraction(1e-6, 48), 1);
  EXPECT_RAD_ERROR(heads_for_fraction(0, 48), "--fraction");
  EXPECT_RAD_ERROR(heads_for_fraction(1.5, 48), "--fraction");
  std::vector<HeadScore> ranked;
  for (int64_t i = 0; i < 48; ++i) ranked.push_back({i / 8, i % 8, 0, 0, 48.0 - i, i + 1, 0});
  HeadSelector sel;
  sel.fraction = 0.03;
  EXPECT_EQ(select_heads(ranked, sel).size(), 2u);
}

}  // namespace
}  // namespace rad::test
