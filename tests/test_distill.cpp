// Distillation stages on a tiny teacher with a perturbed copy as the student.
#include <ATen/ATen.h>

#include <torch/csrc/autograd/function.h>

#include <fstream>
#include <map>
#include <set>

#include "rad/distill/distill.h"
#include "rad/distill/init_from_attention.h"
#include "rad/distill/teacher_cache.h"
#include "rad/io/checkpoint.h"
#include "rad/io/safetensors.h"
#include "test_util.h"
#include "tiny_distill_options.h"

namespace rad::test {
namespace {

PretrainData fixture_data() {
  std::string text;
  for (int i = 0; i < 300; ++i) text += "the earth was without form and void " + std::to_string(i) + "\n";
  PretrainData d;
  d.encode = [](const std::string& s) {
    std::vector<int64_t> ids;
    for (unsigned char c : s) ids.push_back(c % 60 + 2);
    return ids;
  };
  d.bos = 1;
  d.corpus = TokenCorpus::from_text(text, d.encode, 0.1);
  d.write_tokenizer = [](const std::string&) {};
  return d;
}

CausalLM perturbed_student(uint64_t seed, const std::string& fixture = "llama_gqa") {
  CausalLM s = io::load_causal_lm(fixture_model(fixture), at::kFloat);
  at::NoGradGuard no_grad;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  for (auto& item : s->named_parameters())
    if (item.key().find("self_attn") != std::string::npos)
      item.value().add_(at::normal(0.0, 0.1, item.value().sizes(), gen, at::TensorOptions().dtype(at::kFloat)));
  return s;
}

DistillOptions tiny_options(const std::string& out) { return tiny_distill_options(out, 5, 2, 5); }

std::vector<nlohmann::json> records(const std::string& path) {
  std::vector<nlohmann::json> out;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    auto j = nlohmann::json::parse(line);
    if (j.contains("loss")) out.push_back(j);
  }
  return out;
}

TEST(Distill, AlignmentLossIsZeroForTheTeacherItself) {
  CausalLM teacher = io::load_causal_lm(fixture_model("llama_gqa"));
  at::NoGradGuard no_grad;
  std::vector<at::Tensor> in, out;
  ForwardHooks capture;
  capture.residual_in = &in;
  capture.residual_out = &out;
  teacher->forward(at::arange(2, 14, at::kLong).unsqueeze(0), nullptr, &capture);
  EXPECT_LT(hidden_alignment_loss(teacher, in, out).item<double>(), 1e-6);
  CausalLM student = perturbed_student(1);
  EXPECT_GT(hidden_alignment_loss(student, in, out).item<double>(), 1e-2);
}

TEST(Distill, StagesReduceTheirLossesAndResumeExactly) {
  PretrainData d = fixture_data();
  CausalLM teacher = io::load_causal_lm(fixture_model("llama_gqa"));
  TempDir dir;
  auto saver = [](CausalLM& m, const std::string& out) { io::save_causal_lm(m, out); };

  CausalLM full_student = perturbed_student(7);
  DistillOptions full = tiny_options(dir.file("full"));
  distill(teacher, full_student, full, d, saver);
  auto rec = records(dir.file("full/metrics.jsonl"));
  ASSERT_EQ(rec.size(), 10u);
  EXPECT_EQ(rec[0]["stage"], "align");
  EXPECT_EQ(rec[9]["stage"], "kd");
  EXPECT_LT(rec[4]["loss"].get<double>(), rec[0]["loss"].get<double>()) << "alignment improves";
  EXPECT_LT(rec[9]["kl"].get<double>(), rec[5]["kl"].get<double>()) << "KL improves";
  // Interrupted in the middle of the kd stage, then resumed.
  for (int64_t stop : {3, 7}) {
    std::string out = dir.file("part" + std::to_string(stop));
    CausalLM student = perturbed_student(7);
    DistillOptions part = tiny_options(out);
    part.stop_after = stop;
    distill(teacher, student, part, d, saver);
    CausalLM resumed = perturbed_student(7);  // a fresh process would start from the converted student
    part.stop_after = 0;
    part.resume = true;
    distill(teacher, resumed, part, d, saver);
    auto a = io::SafetensorsFile::open(dir.file("full/model.safetensors"));
    auto b = io::SafetensorsFile::open(out + "/model.safetensors");
    for (const auto& e : a->entries()) EXPECT_TRUE(at::equal(a->tensor(e.name), b->tensor(e.name))) << stop << " " << e.name;
    auto rb = records(out + "/metrics.jsonl");
    ASSERT_EQ(rb.size(), rec.size());
    for (size_t i = 0; i < rec.size(); ++i) EXPECT_EQ(rec[i]["loss"], rb[i]["loss"]) << stop << " " << i;
  }
}

// The teacher cache changes nothing: a run that writes it and a run that reads it (a second student
// on the same rows) train exactly the student a run without it trains; a cache of another teacher
// is refused, naming its teacher.json.
TEST(Distill, TeacherCacheGivesTheSameStudentAndRefusesAnotherTeacher) {
  PretrainData d = fixture_data();
  CausalLM teacher = io::load_causal_lm(fixture_model("llama_gqa"));
  TempDir dir;
  auto saver = [](CausalLM& m, const std::string& out) { io::save_causal_lm(m, out); };
  for (const std::string name : {"plain", "writes", "reads"}) {
    CausalLM student = perturbed_student(7);
    DistillOptions o = tiny_options(dir.file(name));
    if (name != "plain") o.teacher_cache = dir.file("cache");
    distill(teacher, student, o, d, saver);
  }
  size_t cached = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir.file("cache"))) cached += e.path().extension() == ".npy";
  EXPECT_EQ(cached, 5u) << "one file per KD batch";
  auto plain = io::SafetensorsFile::open(dir.file("plain/model.safetensors"));
  for (const std::string name : {"writes", "reads"}) {
    auto other = io::SafetensorsFile::open(dir.file(name + "/model.safetensors"));
    for (const auto& e : plain->entries())
      EXPECT_TRUE(at::equal(plain->tensor(e.name), other->tensor(e.name))) << name << " " << e.name;
  }
  // Logits from a hit equal the teacher's forward.
  TeacherHiddenCache cache(dir.file("cache"), teacher);
  at::Tensor ids = at::arange(2, 26, at::kLong).view({2, 12});
  at::Tensor first = cache.logits(teacher, ids), second = cache.logits(teacher, ids);
  EXPECT_EQ(cache.misses(), 1);
  EXPECT_EQ(cache.hits(), 1);
  at::NoGradGuard no_grad;
  EXPECT_TRUE(at::equal(second, teacher->forward(ids)));
  EXPECT_TRUE(at::equal(first, second));
  CausalLM other = perturbed_student(9);
  try {
    TeacherHiddenCache refused(dir.file("cache"), other);
    ADD_FAILURE() << "a cache of another teacher was accepted";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find(dir.file("cache/teacher.json")), std::string::npos) << m;
    EXPECT_NE(m.find("another --teacher-cache"), std::string::npos) << m;
  }
}

// Both stages' per-step losses with the teacher's weights held in `weights`, computed in float32.
std::vector<nlohmann::json> losses_with_teacher(const std::string& fixture, at::ScalarType weights,
                                                const std::string& out) {
  PretrainData d = fixture_data();
  CausalLM teacher = io::load_causal_lm(fixture_model(fixture), weights);
  EXPECT_EQ(teacher->dtype(), weights);
  teacher->set_compute_dtype(at::kFloat);
  CausalLM student = perturbed_student(5, fixture);
  distill(teacher, student, tiny_options(out), d, [](CausalLM& m, const std::string& o) { io::save_causal_lm(m, o); });
  return records(out + "/metrics.jsonl");
}

// A bf16 checkpoint held as stored (memory-mapped, no float32 copy) and computed in float32 is the
// same teacher as its float32 copy: the converted weights are the same numbers.
TEST(Distill, Bf16TeacherHeldAsStoredGivesTheFloat32CopysLosses) {
  TempDir dir;
  auto bf16 = losses_with_teacher("llama_bf16", at::kBFloat16, dir.file("bf16"));
  auto fp32 = losses_with_teacher("llama_bf16", at::kFloat, dir.file("fp32"));
  ASSERT_EQ(bf16.size(), 10u);
  ASSERT_EQ(fp32.size(), bf16.size());
  for (size_t i = 0; i < bf16.size(); ++i) {
    const double a = bf16[i]["loss"].get<double>(), b = fp32[i]["loss"].get<double>();
    EXPECT_NEAR(a, b, 1e-6 * std::abs(b)) << "step " << i + 1 << " (" << bf16[i]["stage"] << ")";
  }
}

// A float32 checkpoint held in bf16 (rounded on load) distils within bf16's precision of the float32
// teacher: bf16 keeps 8 significant bits (relative rounding up to 2^-9 per weight).
TEST(Distill, Float32TeacherHeldInBf16StaysWithinBf16Tolerance) {
  TempDir dir;
  auto bf16 = losses_with_teacher("llama_gqa", at::kBFloat16, dir.file("bf16"));
  auto fp32 = losses_with_teacher("llama_gqa", at::kFloat, dir.file("fp32"));
  ASSERT_EQ(bf16.size(), 10u);
  ASSERT_EQ(fp32.size(), bf16.size());
  double max_rel = 0;
  for (size_t i = 0; i < bf16.size(); ++i) {
    const double a = bf16[i]["loss"].get<double>(), b = fp32[i]["loss"].get<double>();
    max_rel = std::max(max_rel, std::abs(a - b) / std::abs(b));
    EXPECT_NEAR(a, b, 1e-2 * std::abs(b)) << "step " << i + 1 << " (" << bf16[i]["stage"] << ")";
  }
  EXPECT_GT(max_rel, 0.0) << "the bf16 teacher's weights were rounded, so some loss must differ";
}

TEST(Distill, AlignmentOnlyTrainsTheSelectedParameters) {
  PretrainData d = fixture_data();
  CausalLM teacher = io::load_causal_lm(fixture_model("llama_gqa"));
  CausalLM student = perturbed_student(2);
  at::Tensor mlp_before = student->model->layer_list[0]->mlp->up_proj->weight.clone();
  at::Tensor attn_before = student->model->layer_list[0]->self_attn->named_parameters()["q_proj.weight"].clone();
  TempDir dir;
  DistillOptions o = tiny_options(dir.file("o"));
  o.kd.steps = 0;
  distill(teacher, student, o, d, [](CausalLM& m, const std::string& out) { io::save_causal_lm(m, out); });
  EXPECT_TRUE(at::equal(mlp_before, student->model->layer_list[0]->mlp->up_proj->weight));
  EXPECT_FALSE(at::equal(attn_before, student->model->layer_list[0]->self_attn->named_parameters()["q_proj.weight"]));
}

// A hybrid (one kept head, SSM heads elsewhere) for the checkpointing tests.
CausalLM small_hybrid() {
  CausalLM teacher = io::load_causal_lm(fixture_model("llama_gqa"));
  HybridConfig hc;
  hc.base = teacher->config();
  hc.plan.kept_heads = {{0, 1}};
  hc.ssm.d_state = 4;
  return convert_from_teacher(teacher, hc, SsmInit::kAttention);
}

// Autograd nodes of the graph behind `t` whose name contains `needle`.
int64_t graph_nodes_named(const at::Tensor& t, const std::string& needle) {
  std::vector<torch::autograd::Node*> stack = {t.grad_fn().get()};
  std::set<torch::autograd::Node*> seen;
  int64_t n = 0;
  while (!stack.empty()) {
    torch::autograd::Node* node = stack.back();
    stack.pop_back();
    if (node == nullptr || !seen.insert(node).second) continue;
    n += node->name().find(needle) != std::string::npos;
    for (const auto& e : node->next_edges()) stack.push_back(e.function.get());
  }
  return n;
}

struct LossAndGrads {
  double loss;
  std::map<std::string, at::Tensor> grads;
  int64_t checkpointed_layers;  // checkpoint nodes in the graph
};

// Cross-entropy of the model on a fixed batch, backward; the loss and every gradient.
LossAndGrads loss_and_grads(CausalLM& m) {
  at::Tensor ids = at::arange(0, 2 * 20, at::kLong).remainder(61).add(2).view({2, 20});
  for (auto& p : m->parameters()) p.mutable_grad() = at::Tensor();
  at::Tensor logits = m->forward(ids.narrow(1, 0, 19));
  at::Tensor loss = at::cross_entropy_loss(logits.reshape({-1, logits.size(-1)}), ids.narrow(1, 1, 19).reshape({-1}));
  LossAndGrads r{loss.item<double>(), {}, graph_nodes_named(loss, "CheckpointedLayer")};
  loss.backward();
  for (const auto& item : m->named_parameters())
    if (item.value().grad().defined()) r.grads[item.key()] = item.value().grad().clone();
  return r;
}

TEST(Distill, ActivationCheckpointingGivesTheSameLossAndGradients) {
  CausalLM m = small_hybrid();
  m->train();
  // Frozen embeddings, as in KD: the first layer's input needs no gradient, its weights still do.
  m->model->embed_tokens->weight.set_requires_grad(false);
  LossAndGrads a = loss_and_grads(m);
  m->set_activation_checkpointing(true);
  LossAndGrads b = loss_and_grads(m);
  EXPECT_EQ(a.checkpointed_layers, 0);
  EXPECT_EQ(b.checkpointed_layers, m->config().n_layer) << "every layer is recomputed in backward";
  const auto& plain = a.grads;
  const auto& ckpt = b.grads;
  EXPECT_EQ(a.loss, b.loss);
  ASSERT_EQ(plain.size(), ckpt.size());
  EXPECT_EQ(plain.size(), m->parameters().size() - 1) << "every parameter but the frozen embeddings has a gradient";
  for (const auto& [name, g] : plain) {
    ASSERT_TRUE(ckpt.count(name)) << name;
    const double scale = g.abs().max().item<double>();
    EXPECT_GT(scale, 0.0) << name;
    EXPECT_LE((g - ckpt.at(name)).abs().max().item<double>(), 1e-6 * scale) << name;
  }
}

TEST(Distill, ActivationCheckpointingKeepsTheDistillationLosses) {
  PretrainData d = fixture_data();
  CausalLM teacher = io::load_causal_lm(fixture_model("llama_gqa"));
  TempDir dir;
  auto saver = [](CausalLM& m, const std::string& out) { io::save_causal_lm(m, out); };
  std::vector<std::vector<nlohmann::json>> runs;
  for (bool ckpt : {false, true}) {
    CausalLM student = small_hybrid();
    DistillOptions o = tiny_options(dir.file(ckpt ? "ckpt" : "plain"));
    o.align_trainable = align_trains;
    o.kd_trainable = [](const std::string& n) { return kd_trains(n, false); };
    o.activation_checkpointing = ckpt;
    distill(teacher, student, o, d, saver);
    runs.push_back(records(o.out_dir + "/metrics.jsonl"));
  }
  ASSERT_EQ(runs[0].size(), 10u);
  ASSERT_EQ(runs[1].size(), runs[0].size());
  for (size_t i = 0; i < runs[0].size(); ++i) {
    const double a = runs[0][i]["loss"].get<double>(), b = runs[1][i]["loss"].get<double>();
    EXPECT_NEAR(a, b, 1e-6 * std::abs(a)) << "step " << i + 1 << " (" << runs[0][i]["stage"] << ")";
  }
}

// Under HF rotate-half RoPE dim i pairs with i + d/2 at frequency theta^(-2i/d): B and C keep the
// lowest-frequency pairs, i.e. the last dims of each half.
TEST(Distill, AttentionInitKeepsTheLowestFrequencyRotaryDims) {
  EXPECT_EQ(ssm_state_dims(8, 8), (std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7}));
  EXPECT_EQ(ssm_state_dims(8, 4), (std::vector<int64_t>{2, 3, 6, 7}));
  EXPECT_EQ(ssm_state_dims(8, 3), (std::vector<int64_t>{2, 3, 7}));
  EXPECT_EQ(ssm_state_dims(16, 2), (std::vector<int64_t>{7, 15}));
  EXPECT_RAD_ERROR(ssm_state_dims(8, 9), "d_state 9 must be in [1, d_head = 8]");
  // The converted B rows are exactly those K rows.
  CausalLM teacher = io::load_causal_lm(fixture_model("llama_gqa"));
  HybridConfig hc;
  hc.base = teacher->config();
  hc.ssm.d_state = 4;
  CausalLM hybrid = convert_from_teacher(teacher, hc, SsmInit::kAttention);
  const int64_t d = hc.base.d_head;
  at::Tensor k = *teacher->named_parameters().find("model.layers.0.self_attn.k_proj.weight");
  at::Tensor b = *hybrid->named_parameters().find("model.layers.0.self_attn.ssm.B_proj.weight");
  std::vector<int64_t> dims = ssm_state_dims(d, 4);
  for (size_t i = 0; i < dims.size(); ++i) EXPECT_TRUE(at::equal(b[i], k[dims[i]])) << i;  // head 0, group 0
}

// The stage rules on a real hybrid's parameter names: alignment trains exactly the SSM heads; KD
// trains everything but the embeddings and the LM head (and, frozen, not the kept q/k/v).
TEST(Distill, StageRulesTrainWhatTheMethodSays) {
  CausalLM teacher = io::load_causal_lm(fixture_model("llama_gqa"));
  HybridConfig hc;
  hc.base = teacher->config();
  hc.plan.kept_heads = {{0, 1}};
  hc.ssm.d_state = 4;
  CausalLM hybrid = convert_from_teacher(teacher, hc, SsmInit::kAttention);
  int64_t ssm = 0, frozen_by_kd = 0, kept_qkv = 0;
  for (const auto& item : hybrid->named_parameters()) {
    const std::string& n = item.key();
    bool is_ssm = n.find(".self_attn.ssm.") != std::string::npos;
    bool is_embedding = n.find("embed_tokens") != std::string::npos || n.rfind("lm_head", 0) == 0;
    bool is_kept_qkv = n.find(".self_attn.q_proj") != std::string::npos || n.find(".self_attn.k_proj") != std::string::npos ||
                       n.find(".self_attn.v_proj") != std::string::npos;
    ssm += is_ssm;
    kept_qkv += is_kept_qkv;
    EXPECT_EQ(align_trains(n), is_ssm) << n;
    EXPECT_EQ(kd_trains(n, false), !is_embedding) << n;
    EXPECT_EQ(kd_trains(n, true), !is_embedding && !is_kept_qkv) << n;
    frozen_by_kd += !kd_trains(n, false);
  }
  EXPECT_GT(ssm, 0);
  EXPECT_GT(kept_qkv, 0) << "layer 0 keeps head 1, so it has q/k/v projections";
  EXPECT_GE(frozen_by_kd, 1) << "the embeddings are never trained by KD";
}

}  // namespace
}  // namespace rad::test
