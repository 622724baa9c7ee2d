// Hybrid benchmarks (issue 6). Prints one JSON object.
//  1. SSD forward+backward time, chunked vs naive quadratic (and the step recurrence, forward only),
//     for one layer's SSM heads [1, T, H, P] with state N.
//  2. Decode time per token against context length L for teacher, hybrid and pure SSM (random
//     weights; the cache is filled with random K/V of length L and a random SSM state, since
//     decode cost does not depend on the values), with the bytes the cache holds at L.
//   build/bench_hybrid [--ssd-lengths 256,512,...] [--contexts 512,...] [--steps N] [--threads K]
#include <ATen/ATen.h>
#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdio>

#include "rad/core/torch_setup.h"
#include "rad/model/causal_lm.h"
#include "rad/model/hybrid_mixer.h"
#include "rad/model/ssm.h"

namespace {
using clk = std::chrono::steady_clock;
double seconds_since(clk::time_point t0) { return std::chrono::duration<double>(clk::now() - t0).count(); }

template <class F>
double best_of(int reps, F f) {
  double best = 1e30;
  for (int i = 0; i < reps; ++i) {
    auto t0 = clk::now();
    f();
    best = std::min(best, seconds_since(t0));
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"hybrid benchmarks"};
  std::vector<int64_t> ssd_lengths = {256, 512, 1024, 2048}, contexts = {512, 1024, 2048, 4096, 8192, 16384};
  int64_t steps = 32, heads = 8, d_head = 64, d_state = 64, chunk = 64;
  int threads = 0;
  app.add_option("--ssd-lengths", ssd_lengths)->delimiter(',');
  app.add_option("--contexts", contexts)->delimiter(',');
  app.add_option("--steps", steps);
  app.add_option("--heads", heads);
  app.add_option("--d-state", d_state);
  app.add_option("--chunk", chunk);
  app.add_option("--threads", threads);
  CLI11_PARSE(app, argc, argv);
  rad::configure_torch(threads);
  nlohmann::json out = {{"env", rad::runtime_environment()}};

  // 1. SSD forward + backward.
  nlohmann::json ssd = nlohmann::json::array();
  for (int64_t T : ssd_lengths) {
    at::manual_seed(0);
    at::Tensor x = at::randn({1, T, heads, d_head}), la = -at::softplus(at::randn({1, T, heads})) * 0.1;
    at::Tensor B = at::randn({1, T, heads, d_state}) * 0.1, C = at::randn({1, T, heads, d_state}) * 0.1;
    auto run = [&](int mode) {
      std::vector<at::Tensor> l = {x.clone().requires_grad_(), la.clone().requires_grad_(), B.clone().requires_grad_(),
                                   C.clone().requires_grad_()};
      at::Tensor y = mode == 0 ? rad::ssd_chunked(l[0], l[1], l[2], l[3], chunk).first : rad::ssd_naive(l[0], l[1], l[2], l[3]);
      y.square().sum().backward();
    };
    double tc = best_of(3, [&] { run(0); });
    double tn = best_of(T <= 2048 ? 2 : 1, [&] { run(1); });
    double tr = 0;
    {
      at::NoGradGuard ng;
      tr = best_of(1, [&] { rad::ssd_recurrent(x, la, B, C); });
    }
    ssd.push_back({{"T", T}, {"chunked_fwd_bwd_s", tc}, {"naive_fwd_bwd_s", tn}, {"recurrent_fwd_s", tr},
                   {"chunked_tokens_per_s", T / tc}, {"naive_tokens_per_s", T / tn}});
    std::fprintf(stderr, "ssd T=%lld chunked %.4fs naive %.4fs recurrent(fwd) %.4fs\n", (long long)T, tc, tn, tr);
  }
  out["ssd"] = {{"heads", heads}, {"d_head", d_head}, {"d_state", d_state}, {"chunk", chunk}, {"runs", ssd}};

  // 2. Decode per token vs context.
  rad::ModelConfig c;
  c.n_vocab = 4096;
  c.d_model = 512;
  c.n_layer = 4;
  c.n_head = 8;
  c.n_head_kv = 4;
  c.d_head = 64;
  c.d_ff = 1376;
  c.max_position_embeddings = 1 << 20;
  rad::HybridConfig hybrid_cfg, ssm_cfg, all_cfg;
  for (auto* hc : {&hybrid_cfg, &ssm_cfg, &all_cfg}) {
    hc->base = c;
    hc->ssm.d_state = d_state;
  }
  hybrid_cfg.plan.kept_heads = {{1, 0}, {1, 1}, {2, 4}};  // 3 heads (~9%), 2 KV groups
  struct Variant {
    std::string name;
    rad::CausalLM model;
  };
  std::vector<Variant> variants = {{"teacher", rad::CausalLM(c)},
                                   {"hybrid_3_heads", rad::make_hybrid_lm(hybrid_cfg)},
                                   {"pure_ssm", rad::make_hybrid_lm(ssm_cfg)}};
  out["decode_config"] = {{"d_model", c.d_model}, {"n_layer", c.n_layer}, {"n_head", c.n_head}, {"n_head_kv", c.n_head_kv},
                          {"d_head", c.d_head}, {"d_ff", c.d_ff}, {"n_vocab", c.n_vocab}, {"d_state", d_state},
                          {"hybrid_kept_heads", "(1,0),(1,1),(2,4)"}, {"steps", steps}};
  nlohmann::json dec = nlohmann::json::array();
  at::NoGradGuard no_grad;
  for (auto& v : variants) {
    rad::init_parameters(*v.model, 0.02, 1);
    v.model->eval();
    for (int64_t L : contexts) {
      rad::DecodeCache cache = v.model->new_cache();
      for (size_t l = 0; l < cache.layers.size(); ++l) {
        if (auto* a = dynamic_cast<rad::AttentionCache*>(cache.layers[l].get())) {
          a->k = at::randn({1, c.n_head_kv, L, c.d_head});
          a->v = at::randn({1, c.n_head_kv, L, c.d_head});
        } else if (auto* h = dynamic_cast<rad::HybridCache*>(cache.layers[l].get())) {
          auto* m = dynamic_cast<rad::HybridMixer*>(v.model->model->layer_list[l]->self_attn.get());
          int64_t g = static_cast<int64_t>(m->kept_groups.size());
          if (g > 0) {
            h->k = at::randn({1, g, L, c.d_head});
            h->v = at::randn({1, g, L, c.d_head});
          }
          if (!m->ssm_heads.empty())
            h->ssm_state = at::randn({1, static_cast<int64_t>(m->ssm_heads.size()), c.d_head, d_state});
        }
      }
      cache.length = L;
      at::Tensor tok = at::tensor({int64_t{5}}, at::kLong).unsqueeze(0);
      for (int i = 0; i < 2; ++i) v.model->forward(tok, &cache);  // warm-up
      int64_t bytes_at_L = cache.bytes();
      auto t0 = clk::now();
      for (int64_t i = 0; i < steps; ++i) v.model->forward(tok, &cache);
      double per_token = seconds_since(t0) / steps;
      dec.push_back({{"model", v.name}, {"context", L}, {"ms_per_token", per_token * 1e3}, {"cache_bytes", bytes_at_L}});
      std::fprintf(stderr, "decode %-15s L=%6lld %.3f ms/token cache %lld bytes\n", v.name.c_str(), (long long)L,
                   per_token * 1e3, (long long)bytes_at_L);
    }
  }
  out["decode"] = dec;
  std::printf("%s\n", out.dump(2).c_str());
  return 0;
}
