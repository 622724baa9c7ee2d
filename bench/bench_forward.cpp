// Forward-throughput benchmark: tokens/s of a full forward at T=256 for a ~10M-parameter Llama
// config, fp32 and bf16, plus greedy step-decode tokens/s. Prints one JSON object.
//   build/bench_forward [--batch B] [--seq T] [--iters N] [--threads K]
#include <ATen/ATen.h>
#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdio>

#include "rad/core/torch_setup.h"
#include "rad/io/checkpoint.h"
#include "rad/model/causal_lm.h"

int main(int argc, char** argv) {
  CLI::App app{"forward throughput benchmark"};
  int64_t batch = 1, seq = 256, iters = 10, decode_tokens = 64;
  int threads = 0;
  app.add_option("--batch", batch);
  app.add_option("--seq", seq);
  app.add_option("--iters", iters);
  app.add_option("--decode-tokens", decode_tokens);
  app.add_option("--threads", threads);
  CLI11_PARSE(app, argc, argv);
  rad::configure_torch(threads);

  rad::ModelConfig c;
  c.n_vocab = 8192;
  c.d_model = 256;
  c.n_layer = 8;
  c.n_head = 8;
  c.n_head_kv = 4;
  c.d_head = 32;
  c.d_ff = 688;
  c.max_position_embeddings = 1024;
  nlohmann::json out = {{"config", {{"n_vocab", c.n_vocab}, {"d_model", c.d_model}, {"n_layer", c.n_layer},
                                    {"n_head", c.n_head}, {"n_head_kv", c.n_head_kv}, {"d_ff", c.d_ff}}},
                        {"batch", batch}, {"seq", seq}, {"iters", iters},
                        {"env", rad::runtime_environment()}};
  at::NoGradGuard no_grad;
  for (auto dtype : {at::kFloat, at::kBFloat16}) {
    rad::CausalLM model(c);
    rad::init_parameters(*model, 0.02, 1);
    model->to(dtype);
    model->eval();
    out["parameters"] = model->parameter_count();
    at::Tensor ids = at::randint(c.n_vocab, {batch, seq}, at::kLong);
    for (int i = 0; i < 2; ++i) model->forward(ids);  // warm-up
    auto t0 = std::chrono::steady_clock::now();
    for (int64_t i = 0; i < iters; ++i) model->forward(ids);
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    double forward_tps = batch * seq * iters / s;
    // Step decode after a 256-token prefill.
    rad::DecodeCache cache = model->new_cache();
    at::Tensor logits = model->forward(ids.narrow(0, 0, 1), &cache);
    auto t1 = std::chrono::steady_clock::now();
    for (int64_t i = 0; i < decode_tokens; ++i) {
      at::Tensor next = logits.select(1, logits.size(1) - 1).argmax(-1, true);
      logits = model->forward(next, &cache);
    }
    double ds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
    out[rad::io::dtype_name(dtype)] = {{"forward_tokens_per_s", forward_tps},
                                       {"decode_tokens_per_s", decode_tokens / ds}};
    std::fprintf(stderr, "%s: forward %.0f tokens/s, decode %.1f tokens/s\n", rad::io::dtype_name(dtype).c_str(),
                 forward_tps, decode_tokens / ds);
  }
  std::printf("%s\n", out.dump(2).c_str());
  return 0;
}
