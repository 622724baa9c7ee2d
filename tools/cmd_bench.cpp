// radistill bench MODEL: prompt-processing and generation speed, like llama-bench.
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "commands.h"
#include "rad/core/error.h"
#include "rad/core/log.h"
#include "rad/core/torch_setup.h"
#include "rad/io/checkpoint.h"
#include "rad/io/gguf.h"
#include "rad/runtime/engine.h"
#include "rad/tokenizer/tokenizer.h"

namespace rad::cli {
namespace {

// Peak resident set of this process so far (VmHWM), in bytes.
int64_t peak_rss_bytes() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::stoll(line.substr(6)) * 1024;
  return 0;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// The prompt's special tokens (rad::prompt_prefix: BOS where the tokenizer adds it, as llama-bench
// starts its prompts), set once per run.
std::vector<int64_t> g_prefix;

// Deterministic prompt tokens spread over the vocabulary, after the special prefix.
std::vector<int64_t> bench_tokens(int64_t n, int64_t vocab) {
  std::vector<int64_t> ids(n);
  for (int64_t i = 0; i < n; ++i) ids[i] = (i * 7919 + 13) % vocab;
  for (size_t i = 0; i < g_prefix.size() && static_cast<int64_t>(i) < n; ++i) ids[i] = g_prefix[i];
  return ids;
}

struct Row {
  int64_t n_prompt, n_gen;
  double pp_s = 0, tg_s = 0;
  int64_t cache_allocated = 0, cache_used = 0, peak_rss = 0;
};

Row bench_runtime(const std::shared_ptr<const runtime::Model>& model, int64_t p, int64_t gen, int threads,
                  runtime::CacheType kv_type) {
  const ModelConfig& c = model->config();
  runtime::SessionOptions so;
  so.n_ctx = p + gen;
  so.threads = threads;
  so.cache_type = kv_type;
  runtime::Session s(model, so);
  std::vector<int64_t> ids = bench_tokens(p, c.n_vocab);
  Row r{p, gen};
  auto t0 = std::chrono::steady_clock::now();
  const float* logits = s.forward(ids.data(), p);
  r.pp_s = seconds_since(t0);
  t0 = std::chrono::steady_clock::now();
  for (int64_t i = 0; i < gen; ++i) {
    int64_t next = std::max_element(logits, logits + c.n_vocab) - logits;
    logits = s.step(next);
  }
  r.tg_s = seconds_since(t0);
  r.cache_allocated = s.cache_bytes().allocated();
  r.cache_used = s.cache_bytes().used();
  r.peak_rss = peak_rss_bytes();
  return r;
}

Row bench_torch(CausalLM& model, int64_t p, int64_t gen) {
  at::NoGradGuard no_grad;
  const int64_t V = model->config().n_vocab;
  std::vector<int64_t> ids = bench_tokens(p, V);
  DecodeCache cache = model->new_cache();
  Row r{p, gen};
  auto t0 = std::chrono::steady_clock::now();
  at::Tensor logits = model->forward(at::tensor(ids, at::kLong).unsqueeze(0), &cache);
  r.pp_s = seconds_since(t0);
  t0 = std::chrono::steady_clock::now();
  for (int64_t i = 0; i < gen; ++i) {
    int64_t next = logits.select(1, logits.size(1) - 1).argmax(-1).item<int64_t>();
    logits = model->forward(at::tensor({next}, at::kLong).unsqueeze(0), &cache);
  }
  r.tg_s = seconds_since(t0);
  r.cache_allocated = r.cache_used = cache.bytes();
  r.peak_rss = peak_rss_bytes();
  return r;
}

}  // namespace

void register_bench(CLI::App& app) {
  auto* cmd = app.add_subcommand("bench",
                                 "Prompt-processing (pp) and generation (tg) tokens/s of a teacher or hybrid, cache bytes and peak "
                                 "RSS (like llama-bench)");
  static std::string dir, prompts = "128", engine = "runtime", isa = "auto", cache_type = "f32";
  static int64_t gen = 128, reps = 1;
  static bool json_out = false, no_special = false;
  cmd->add_option("MODEL_DIR", dir, "Model directory (teacher or hybrid) or .gguf file")->required();
  cmd->add_option("--prompt", prompts, "Comma-separated prompt lengths")->capture_default_str();
  cmd->add_option("--gen", gen, "Tokens generated after each prompt (greedy)")->capture_default_str()->check(CLI::NonNegativeNumber);
  cmd->add_option("--reps", reps, "Repetitions per prompt length (the best is reported)")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--engine", engine, "runtime or torch (the libtorch model, float32)")
      ->capture_default_str()
      ->check(CLI::IsMember({"runtime", "torch"}));
  cmd->add_option("--isa", isa, "Runtime kernels: auto, avx2 or portable")->capture_default_str()->check(CLI::IsMember({"auto", "avx2", "portable"}));
  cmd->add_option("--cache-type", cache_type, "K/V cache element type: f32 or f16 (IEEE half: half the K/V bytes; as llama.cpp's -ctk f16 -ctv f16, its default); runtime)")
      ->capture_default_str();
  cmd->add_flag("--json", json_out, "Print JSON instead of a table");
  add_no_special_tokens_flag(cmd, no_special);
  cmd->callback([] {
    require_cpu_device("bench");
    const runtime::CacheType kv_type = runtime::parse_cache_type(cache_type);
    RAD_CHECK(engine == "runtime" || kv_type == runtime::CacheType::kF32,
              "bench: --cache-type {} needs --engine runtime (the libtorch model's cache is float32)", cache_type);
    std::vector<int64_t> lengths = parse_token_ids(prompts);
    RAD_CHECK(!lengths.empty(), "bench: --prompt needs at least one length");
    for (int64_t p : lengths) RAD_CHECK(p >= 1, "bench: prompt length {} must be >= 1", p);
    const int threads = global_options().threads > 0 ? global_options().threads : available_cores();
    nlohmann::json out = nlohmann::json::array();
    std::shared_ptr<const runtime::Model> rt;
    CausalLM tm{nullptr};
    ModelConfig c;
    std::string weights, isa_used = "libtorch";
    int64_t params = 0;
    if (engine == "runtime") {
      if (isa != "auto") runtime::set_isa(isa == "avx2" ? runtime::Isa::kAvx2 : runtime::Isa::kPortable);
      rt = runtime::Model::load(dir);
      c = rt->config();
      weights = rt->weight_dtypes();
      params = rt->parameter_count();
      isa_used = runtime::isa_name(runtime::active_isa());
    } else {
      tm = io::load_causal_lm(dir, at::kFloat);
      c = tm->config();
      weights = "F32";
      params = tm->parameter_count();
    }
    // A directory without tokenizer.json (random-weight benchmark models), or a GGUF file without
    // tokenizer metadata, has no special tokens to add.
    const bool has_tokenizer = std::filesystem::is_regular_file(dir)
                                   ? io::GgufFile::open(dir)->has("tokenizer.ggml.model")
                                   : std::filesystem::exists(std::filesystem::path(dir) / "tokenizer.json");
    if (has_tokenizer)
      g_prefix = prompt_prefix(Tokenizer::load(dir), !no_special);
    for (int64_t id : g_prefix)
      RAD_CHECK(id >= 0 && id < c.n_vocab, "bench: {}/tokenizer.json: special token id {} is outside the model's vocabulary of {}",
                dir, id, c.n_vocab);
    if (!json_out)
      std::printf("| model | params | weights | engine | kernels | threads | test | t/s | cache bytes | peak RSS MiB |\n"
                  "| --- | ---: | --- | --- | --- | ---: | --- | ---: | ---: | ---: |\n");
    for (int64_t p : lengths) {
      if (p + gen > c.max_position_embeddings)
        log_warn("bench: {} + {} tokens exceed max_position_embeddings {} (RoPE positions beyond training)", p, gen,
                 c.max_position_embeddings);
      Row best{p, gen};
      for (int64_t rep = 0; rep < reps; ++rep) {
        Row r = engine == "runtime" ? bench_runtime(rt, p, gen, threads, kv_type) : bench_torch(tm, p, gen);
        if (rep == 0 || r.pp_s < best.pp_s) best.pp_s = r.pp_s;
        if (rep == 0 || r.tg_s < best.tg_s) best.tg_s = r.tg_s;
        best.cache_allocated = r.cache_allocated;
        best.cache_used = r.cache_used;
        best.peak_rss = r.peak_rss;
      }
      const double pp = p / best.pp_s, tg = gen > 0 ? gen / best.tg_s : 0;
      nlohmann::json j = {{"model", dir}, {"params", params}, {"weights", weights}, {"engine", engine},
                          {"kernels", isa_used}, {"cache_type", engine == "runtime" ? cache_type : "f32"}, {"threads", engine == "runtime" ? threads : global_options().threads},
                          {"n_prompt", p}, {"prompt_prefix", g_prefix}, {"n_gen", gen}, {"pp_tokens_per_s", pp}, {"pp_seconds", best.pp_s},
                          {"tg_tokens_per_s", tg}, {"tg_seconds", best.tg_s},
                          {"cache_bytes_allocated", best.cache_allocated}, {"cache_bytes_used", best.cache_used},
                          {"peak_rss_bytes", best.peak_rss}};
      out.push_back(j);
      if (!json_out) {
        const char* name = dir.c_str();
        std::printf("| %s | %lld | %s | %s | %s | %d | pp%lld | %.1f | %lld | %.1f |\n", name,
                    static_cast<long long>(params), weights.c_str(), engine.c_str(), isa_used.c_str(), threads,
                    static_cast<long long>(p), pp, static_cast<long long>(best.cache_used), best.peak_rss / 1048576.0);
        if (gen > 0)
          std::printf("| %s | %lld | %s | %s | %s | %d | tg%lld @ %lld | %.1f | %lld | %.1f |\n", name,
                      static_cast<long long>(params), weights.c_str(), engine.c_str(), isa_used.c_str(), threads,
                      static_cast<long long>(gen), static_cast<long long>(p), tg, static_cast<long long>(best.cache_used),
                      best.peak_rss / 1048576.0);
        std::fflush(stdout);
      }
    }
    if (json_out) std::printf("%s\n", out.dump(2).c_str());
  });
}

}  // namespace rad::cli
