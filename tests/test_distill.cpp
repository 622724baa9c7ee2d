// Distillation stages on a tiny teacher with a perturbed copy as the student.
#include <ATen/ATen.h>

#include <fstream>

#include "rad/distill/distill.h"
#include "rad/io/checkpoint.h"
#include "rad/io/safetensors.h"
#include "test_util.h"

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

CausalLM perturbed_student(uint64_t seed) {
  CausalLM s = io::load_causal_lm(fixture_model("llama_gqa"));
  at::NoGradGuard no_grad;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  for (auto& item : s->named_parameters())
    if (item.key().find("self_attn") != std::string::npos)
      item.value().add_(at::normal(0.0, 0.1, item.value().sizes(), gen, at::TensorOptions().dtype(at::kFloat)));
  return s;
}

DistillOptions tiny_options(const std::string& out) {
  DistillOptions o;
  o.out_dir = out;
  o.batch = 4;
  o.seq = 24;
  o.align = {5, 3e-3};
  o.kd = {5, 3e-3};
  o.ce_weight = 0.1;
  o.save_every = 2;
  o.log_every = 1;
  o.eval_every = 5;
  o.probe_pairs = 1;
  o.probe_examples = 2;
  o.ppl_windows = 2;
  o.mix.task_share = 0.0;
  o.seed = 3;
  o.align_trainable = [](const std::string& n) { return n.find("self_attn") != std::string::npos; };
  return o;
}

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

}  // namespace
}  // namespace rad::test
