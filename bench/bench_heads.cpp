// Head-sweep benchmark (issue 5): the single-head ablation sweep with residual reuse (the residual
// stream entering layer l computed once per batch, reused for every head of layer l) against a
// plain full forward per head (HeadAblator::accuracy({head})). Checks that both give the same
// accuracy for every head, and prints one JSON object with both times and the speed-up.
//   build/bench_heads MODEL_DIR [--pairs 50] [--examples 128] [--batch 16] [--threads K]
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>

#include "rad/core/torch_setup.h"
#include "rad/heads/ablation.h"
#include "rad/io/checkpoint.h"
#include "rad/tasks/scorer.h"
#include "rad/tasks/task.h"
#include "rad/tokenizer/tokenizer.h"

int main(int argc, char** argv) {
  CLI::App app{"head-sweep benchmark"};
  std::string dir;
  int64_t pairs = 50, examples = 128, batch = 16;
  int threads = 0;
  app.add_option("MODEL_DIR", dir)->required();
  app.add_option("--pairs", pairs);
  app.add_option("--examples", examples);
  app.add_option("--batch", batch);
  app.add_option("--threads", threads);
  CLI11_PARSE(app, argc, argv);
  rad::configure_torch(threads);
  rad::CausalLM model = rad::io::load_causal_lm(dir);
  rad::Tokenizer tok = rad::Tokenizer::load(dir);
  rad::tasks::Encoder encode = [tok](const std::string& t) { return tok.encode(t, false); };
  rad::tasks::TaskOptions o;
  o.pairs = pairs;
  std::vector<rad::tasks::EncodedExample> probe;
  for (const auto& e : rad::tasks::make_examples("kv", o, examples, 0))
    probe.push_back(rad::tasks::encode_example(e, encode, rad::tasks::leading_bos(tok)));
  rad::HeadAblator ablator(model, probe, "zero", batch);
  using clk = std::chrono::steady_clock;
  auto t0 = clk::now();
  rad::SweepResult sweep = ablator.sweep();
  double reuse_s = std::chrono::duration<double>(clk::now() - t0).count();
  t0 = clk::now();
  int64_t mismatches = 0;
  for (const auto& h : sweep.ranked)
    if (ablator.accuracy({{h.layer, h.head}}) != h.accuracy_without) ++mismatches;
  double plain_s = std::chrono::duration<double>(clk::now() - t0).count();
  nlohmann::json out = {{"model", dir},
                        {"heads", sweep.ranked.size()},
                        {"probe_examples", examples},
                        {"pairs", pairs},
                        {"sweep_with_residual_reuse_s", reuse_s},
                        {"full_forward_per_head_s", plain_s},
                        {"speedup", plain_s / reuse_s},
                        {"accuracy_mismatches", mismatches},
                        {"runtime", rad::runtime_environment()}};
  std::printf("%s\n", out.dump(2).c_str());
  return mismatches == 0 ? 0 : 1;
}
