// Memory accounting, user task files, and the eval suite.
#include <ATen/ATen.h>

#include "rad/eval/memory.h"
#include "rad/eval/user_tasks.h"
#include "rad/io/checkpoint.h"
#include "test_util.h"

namespace rad::test {
namespace {

TEST(Memory, TeacherAndHybridCacheFollowTheFormula) {
  ModelConfig c;
  c.n_layer = 16;
  c.n_head = 32;
  c.n_head_kv = 8;
  c.d_head = 64;
  // Teacher: 16 layers * 8 KV heads * 2 * 64 * 2 bytes = 32 KiB per token.
  EXPECT_EQ(teacher_cache_cost(c, 2).bytes(2048), 16LL * 8 * 2 * 64 * 2 * 2048);
  HybridConfig h;
  h.base = c;
  h.plan.kept_heads = {{5, 0}, {5, 1}, {5, 9}, {7, 3}};  // layer 5: groups 0 and 2; layer 7: group 0
  h.ssm.d_state = 16;
  // KV: 3 groups * 2 * 64 * 2 bytes per token; SSM: (512 - 4) heads * 64 * 16 * 2 bytes (same b).
  CacheCost cost = hybrid_cache_cost(h, 2);
  EXPECT_EQ(cost.per_token, 3 * 2 * 64 * 2);
  EXPECT_EQ(cost.fixed, (512 - 4) * 64 * 16 * 2);
}

// The paper's Table (Llama-3.2-1B, top-10 heads, d_state 8, bf16): 0.8 / 5.7 / 11.0 MB at 128 /
// 2048 / 4096 tokens. The authors' code keeps a K/V copy per kept head, so 10 heads in 10 distinct
// KV groups is their accounting. Ours gives 0.84 / 5.76 / 11.00 MB (MB = 1e6 bytes): within the
// paper's one-decimal rounding at 128 and 4k; at 2k the paper's 5.7 is 0.057 MB lower (it looks
// truncated rather than rounded), so the check allows 0.06 MB.
TEST(Memory, ReproducesThePapersLlama1BRow) {
  ModelConfig c;
  c.n_layer = 16;
  c.n_head = 32;
  c.n_head_kv = 8;
  c.d_head = 64;
  HybridConfig h;
  h.base = c;
  // Ten heads, no two in one (layer, KV group): 4 query heads per group.
  h.plan.kept_heads = {{5, 0}, {5, 4}, {5, 8}, {6, 0}, {6, 12}, {7, 16}, {7, 20}, {8, 0}, {8, 28}, {9, 4}};
  h.ssm.d_state = 8;
  CacheCost cost = hybrid_cache_cost(h, 2);
  EXPECT_EQ(cost.per_token, 10 * 2 * 64 * 2);
  EXPECT_EQ(cost.fixed, 502 * 64 * 8 * 2);
  EXPECT_NEAR(cost.bytes(128) / 1e6, 0.8, 0.05);
  EXPECT_NEAR(cost.bytes(2048) / 1e6, 5.7, 0.06);
  EXPECT_NEAR(cost.bytes(4096) / 1e6, 11.0, 0.05);
  // Kept heads of one layer sharing a KV group share one cache entry (we do better than the paper).
  h.plan.kept_heads = {{5, 0}, {5, 1}, {5, 2}, {5, 3}};
  EXPECT_EQ(hybrid_cache_cost(h, 2).per_token, 1 * 2 * 64 * 2);
}

TEST(Memory, SlidingWindowCapsTheKvCache) {
  ModelConfig c;
  c.n_layer = 2;
  c.n_head = 4;
  c.n_head_kv = 2;
  c.d_head = 8;
  c.sliding_window = 100;
  CacheCost t = teacher_cache_cost(c, 2);
  EXPECT_EQ(t.bytes(50), 50 * t.per_token);
  EXPECT_EQ(t.bytes(1000), 100 * t.per_token);
  // A fixed state of 150 tokens' worth never beats a cache capped at 100 tokens.
  EXPECT_EQ(break_even_length(CacheCost{0, 150 * t.per_token}, t), std::nullopt);
  EXPECT_EQ(break_even_length(CacheCost{0, 50 * t.per_token}, t), 50);
}

TEST(Memory, BreakEvenLength) {
  CacheCost small_state{100, 10000}, big_kv{1000, 0};
  EXPECT_EQ(break_even_length(small_state, big_kv), 12);  // 100 L + 10000 <= 1000 L from L = 11.1
  EXPECT_EQ(break_even_length(big_kv, small_state), std::nullopt);
  EXPECT_EQ(break_even_length(CacheCost{10, 0}, CacheCost{10, 5}), 0);
}

TEST(UserTasks, ParsesBothKindsAndNamesTheLineOfAnError) {
  auto t = parse_user_tasks(
      "{\"context\": \"Q\", \"choices\": [\" a\", \" b\"], \"answer\": 1}\n\n"
      "{\"prompt\": \"P\", \"answer\": \"x\", \"match\": \"contains\"}\n"
      "{\"context\": \"Q\", \"choices\": [\" a\", \" b\"], \"answer\": \" a\"}\n",
      "t.jsonl");
  ASSERT_EQ(t.size(), 3u);
  EXPECT_TRUE(t[0].multiple_choice);
  EXPECT_EQ(t[0].answer_index, 1);
  EXPECT_TRUE(t[1].contains);
  EXPECT_EQ(t[2].answer_index, 0);
  EXPECT_RAD_ERROR(parse_user_tasks("{\"prompt\": \"P\", \"answer\": \"x\"}\n{\"context\": \"Q\", \"choices\": [\"a\"], \"answer\": 0}", "t.jsonl"),
                   "t.jsonl:2: \"choices\" must be an array of at least 2 strings");
  EXPECT_RAD_ERROR(parse_user_tasks("{\"context\": \"Q\", \"choices\": [\"a\", \"b\"], \"answer\": 2}", "t.jsonl"),
                   "answer index 2 out of range");
  EXPECT_RAD_ERROR(parse_user_tasks("[1]", "t.jsonl"), "t.jsonl:1: each line must be a JSON object");
  EXPECT_RAD_ERROR(parse_user_tasks("{\"prompt\": \"P\", \"answer\": \"x\", \"match\": \"regex\"}", "t.jsonl"),
                   "\"match\" must be \"exact\" or \"contains\"");
}

TEST(UserTasks, MultipleChoiceFollowsTheModelsLikelihood) {
  CausalLM model = io::load_causal_lm(fixture_model("llama_gqa"));
  auto encode = [](const std::string& s) {
    std::vector<int64_t> ids;
    for (unsigned char c : s) ids.push_back(c % 60 + 2);
    return ids;
  };
  auto decode = [](const std::vector<int64_t>& ids) { return std::string(ids.size(), 'x'); };
  // The right answer is, by construction, the choice the model finds more likely.
  at::NoGradGuard no_grad;
  std::vector<int64_t> ctx = {1};
  for (int64_t id : encode("abc")) ctx.push_back(id);
  at::Tensor logp = at::log_softmax(model->forward(at::tensor(ctx, at::kLong).unsqueeze(0))[0][-1], -1);
  int64_t a = encode("d")[0], b = encode("e")[0];
  int64_t right = logp[a].item<double>() > logp[b].item<double>() ? 0 : 1;
  UserTask t;
  t.multiple_choice = true;
  t.context = "abc";
  t.choices = {"d", "e"};
  t.answer_index = right;
  UserTask wrong = t;
  wrong.answer_index = 1 - right;
  UserTaskScores s = score_user_tasks(model, {t, wrong}, encode, decode, 1);
  EXPECT_EQ(s.multiple_choice.total, 2);
  EXPECT_EQ(s.multiple_choice.correct, 1);
}

}  // namespace
}  // namespace rad::test
