// Continuous batching in the runtime: aggregate decode tokens/s of B concurrent sessions, each
// advanced by its own Session::step (per-session: the weights are read once per session and token)
// against one runtime::BatchDecoder::step for all B (batched: read once per step for all). The two
// modes alternate within each repetition, so they run side by side under the same machine load.
// Sessions are prefilled (untimed) with distinct prompts of the given length, then decode `gen`
// greedy tokens each; both modes feed the same tokens and produce the same logits (tests/).
//   build/bench_batch MODEL [--batch 1,4,16] [--prompt 128] [--gen 64] [--reps 3] [--threads 1]
// Prints one JSON object per (batch, prompt): median tokens/s of each mode over the repetitions.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "rad/runtime/engine.h"

namespace rt = rad::runtime;

namespace {

std::vector<int64_t> parse_list(const std::string& s) {
  std::vector<int64_t> v;
  std::stringstream in(s);
  for (std::string item; std::getline(in, item, ',');) v.push_back(std::stoll(item));
  return v;
}

int64_t argmax(const float* x, int64_t n) { return std::max_element(x, x + n) - x; }

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
}

// B sessions prefilled with distinct prompts of `prompt` tokens; returns each one's first token.
std::vector<std::unique_ptr<rt::Session>> prefilled(const std::shared_ptr<const rt::Model>& m, int64_t B,
                                                    int64_t prompt, int64_t gen, int threads,
                                                    std::vector<int64_t>* next) {
  const int64_t V = m->config().n_vocab;
  std::vector<std::unique_ptr<rt::Session>> ss;
  next->clear();
  for (int64_t b = 0; b < B; ++b) {
    rt::SessionOptions so;
    so.n_ctx = prompt + gen;
    so.threads = threads;  // the per-session steps use it; the batched mode uses the decoder's
    ss.push_back(std::make_unique<rt::Session>(m, so));
    std::vector<int64_t> ids;
    for (int64_t t = 0; t < prompt; ++t) ids.push_back((t * 7 + b * 13 + 3) % V);
    next->push_back(argmax(ss.back()->forward(ids.data(), prompt), V));
  }
  return ss;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"batched vs per-session decode throughput of the runtime"};
  std::string model_dir, batches = "1,4,16", prompts = "128";
  int64_t gen = 64, reps = 3;
  int threads = 1;
  app.add_option("model", model_dir)->required();
  app.add_option("--batch", batches, "comma-separated session counts");
  app.add_option("--prompt", prompts, "comma-separated prompt lengths (the context the decode runs at)");
  app.add_option("--gen", gen, "tokens decoded per session and repetition");
  app.add_option("--reps", reps);
  app.add_option("--threads", threads, "threads of the per-session steps and of the batched decoder");
  CLI11_PARSE(app, argc, argv);
  try {
    auto m = rt::Model::load(model_dir);
    const int64_t V = m->config().n_vocab;
    rt::BatchDecoderOptions bo;
    bo.threads = threads;
    rt::BatchDecoder dec(m, bo);
    using clock = std::chrono::steady_clock;
    for (int64_t prompt : parse_list(prompts)) {
      for (int64_t B : parse_list(batches)) {
        std::vector<double> solo_tps, batch_tps;
        std::vector<int64_t> solo_last, batch_last;  // the last tokens of each mode: equal (greedy, same logits)
        for (int64_t rep = 0; rep < reps; ++rep) {
          // Per-session: one Session::step per session and token (each Session with `threads`).
          {
            std::vector<int64_t> next;
            std::vector<std::unique_ptr<rt::Session>> ss = prefilled(m, B, prompt, gen, threads, &next);
            const auto t0 = clock::now();
            for (int64_t g = 0; g + 1 < gen; ++g)
              for (int64_t b = 0; b < B; ++b) next[b] = argmax(ss[b]->step(next[b]), V);
            const double s = std::chrono::duration<double>(clock::now() - t0).count();
            solo_tps.push_back(static_cast<double>(B * (gen - 1)) / s);
            solo_last = next;
          }
          // Batched: one BatchDecoder::step for all B sessions per token.
          {
            std::vector<int64_t> next;
            std::vector<std::unique_ptr<rt::Session>> ss = prefilled(m, B, prompt, gen, threads, &next);
            std::vector<rt::Session*> ptrs;
            for (auto& s : ss) ptrs.push_back(s.get());
            dec.reserve(B, prompt + gen);  // the server's decoder is warm too
            const auto t0 = clock::now();
            for (int64_t g = 0; g + 1 < gen; ++g) {
              const float* logits = dec.step(ptrs.data(), next.data(), B);
              for (int64_t b = 0; b < B; ++b) next[b] = argmax(logits + b * V, V);
            }
            const double s = std::chrono::duration<double>(clock::now() - t0).count();
            batch_tps.push_back(static_cast<double>(B * (gen - 1)) / s);
            batch_last = next;
          }
        }
        const double a = median(solo_tps), b = median(batch_tps);
        std::printf(
            "{\"model\": \"%s\", \"threads\": %d, \"prompt\": %lld, \"gen\": %lld, \"sessions\": %lld, \"reps\": %lld, "
            "\"per_session_tok_s\": %.1f, \"batched_tok_s\": %.1f, \"ratio\": %.2f, \"same_tokens\": %s}\n",
            model_dir.c_str(), threads, static_cast<long long>(prompt), static_cast<long long>(gen),
            static_cast<long long>(B), static_cast<long long>(reps), a, b, b / a,
            solo_last == batch_last ? "true" : "false");
        std::fflush(stdout);
      }
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_batch: %s\n", e.what());
    return 1;
  }
  return 0;
}
