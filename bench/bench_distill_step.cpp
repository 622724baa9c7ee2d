// Where one KD step's time goes (issue 27: the main job's run time is students' KD steps). Loads a
// teacher and a hybrid student, then times, over --steps steps of random token rows [batch, seq],
// the parts of distill()'s KD step: the teacher's forward (no grad), the student's forward, the
// fused KL, backward, and the AdamW step (total: their sum); and, apart, the teacher's final norm +
// LM head alone (its share of the teacher's forward). Prints one JSON object (medians in milliseconds).
//   build/bench_distill_step --teacher models/default-teacher --student runs/main/init/hybrid
//       [--batch 8] [--seq 256] [--steps 10] [--threads 2]
#include <ATen/ATen.h>
#include <CLI/CLI.hpp>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>

#include "rad/core/torch_setup.h"
#include "rad/distill/distill.h"
#include "rad/io/checkpoint.h"
#include "rad/io/hybrid_checkpoint.h"
#include "rad/train/optim.h"

namespace {
using clk = std::chrono::steady_clock;
double ms_since(clk::time_point t0) { return std::chrono::duration<double, std::milli>(clk::now() - t0).count(); }
double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}
}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"KD step breakdown"};
  std::string teacher_dir, student_dir;
  int64_t batch = 8, seq = 256, steps = 10;
  int threads = 0;
  app.add_option("--teacher", teacher_dir)->required();
  app.add_option("--student", student_dir)->required();
  app.add_option("--batch", batch);
  app.add_option("--seq", seq);
  app.add_option("--steps", steps);
  app.add_option("--threads", threads);
  CLI11_PARSE(app, argc, argv);
  rad::configure_torch(threads);
  rad::CausalLM teacher = rad::io::load_causal_lm(teacher_dir);
  rad::io::HybridModel student = rad::io::load_hybrid(student_dir, at::kFloat);
  teacher->eval();
  for (auto& p : teacher->parameters()) p.set_requires_grad(false);
  student.model->train();
  auto optimizer = rad::make_adamw(student.model, 0.01, 1e-4,
                                   [](const std::string& n) { return rad::kd_trains(n, false); });
  const int64_t vocab = teacher->config().n_vocab;
  std::vector<double> t_teacher_head, t_teacher, t_student, t_kl, t_backward, t_step, t_total;
  for (int64_t s = 0; s < steps + 1; ++s) {  // the first step warms up and is not counted
    at::manual_seed(s);
    at::Tensor input = at::randint(vocab, {batch, seq}, at::kLong);
    auto t0 = clk::now();
    at::Tensor t_logits;
    {
      at::NoGradGuard no_grad;
      t_logits = teacher->forward(input);
    }
    double a = ms_since(t0);
    // The teacher's logits from its final hidden states alone (what a cache of them would leave).
    at::Tensor hidden;
    {
      at::NoGradGuard no_grad;
      hidden = teacher->run_layers(teacher->embed(input), 0, teacher->config().n_layer);
    }
    auto th = clk::now();
    {
      at::NoGradGuard no_grad;
      t_logits = teacher->final_logits(hidden);
    }
    double a_head = ms_since(th);
    auto t1 = clk::now();
    at::Tensor s_logits = student.model->forward(input);
    double b = ms_since(t1);
    auto t2 = clk::now();
    at::Tensor loss = rad::kl_divergence(t_logits, s_logits);
    double c = ms_since(t2);
    auto t3 = clk::now();
    optimizer->zero_grad();
    loss.backward();
    double d = ms_since(t3);
    auto t4 = clk::now();
    torch::nn::utils::clip_grad_norm_(student.model->parameters(), 1.0);
    optimizer->step();
    double e = ms_since(t4);
    if (s == 0) continue;
    t_teacher.push_back(a);
    t_teacher_head.push_back(a_head);
    t_student.push_back(b);
    t_kl.push_back(c);
    t_backward.push_back(d);
    t_step.push_back(e);
    t_total.push_back(a + b + c + d + e);
  }
  nlohmann::json out = {{"env", rad::runtime_environment()},
                        {"batch", batch},
                        {"seq", seq},
                        {"steps", steps},
                        {"median_ms",
                         {{"teacher_forward", median(t_teacher)},
                          {"teacher_final_logits_only", median(t_teacher_head)},
                          {"student_forward", median(t_student)},
                          {"kl", median(t_kl)},
                          {"backward", median(t_backward)},
                          {"clip_and_adamw", median(t_step)},
                          {"total", median(t_total)}}}};
  std::printf("%s\n", out.dump(2).c_str());
  return 0;
}
