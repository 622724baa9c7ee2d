#include <cstdio>

#include "commands.h"
#include "rad/core/device.h"
#include "rad/core/error.h"
#include "rad/core/log.h"
#include "rad/io/checkpoint.h"
#include "rad/model/generate.h"
#include "rad/runtime/engine.h"
#include "rad/runtime/sampler.h"
#include "rad/tokenizer/tokenizer.h"

namespace rad::cli {

void register_generate(CLI::App& app) {
  auto* cmd = app.add_subcommand("generate",
                                 "Generation with a decode cache (teacher or hybrid); prints the new token ids as JSON (--token-ids) or the "
                                 "decoded continuation (--text)");
  static std::string dir, ids_text, text, dtype = "float32", engine = "runtime", cache_type = "f32";
  static int64_t max_new = 32, n_ctx = 0;
  static bool ignore_eos = false, stats = false, no_special = false;
  static runtime::SamplingOptions sampling;
  static std::vector<std::string> stops;
  cmd->add_option("MODEL_DIR", dir, "Hugging Face or hybrid model directory, or a .gguf file")->required();
  auto* ids_opt = cmd->add_option("--token-ids", ids_text, "Comma-separated prompt token ids");
  auto* text_opt = cmd->add_option("--text", text,
                                   "Prompt text, tokenized with MODEL_DIR's tokenizer; prints only the decoded continuation");
  ids_opt->excludes(text_opt);
  add_no_special_tokens_flag(cmd, no_special);
  cmd->add_option("--max-new-tokens", max_new, "Number of tokens to generate")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--engine", engine,
                  "runtime: the libtorch-free engine (weights as stored, float32 compute); torch: the libtorch model "
                  "(greedy only, for comparison)")
      ->capture_default_str()
      ->check(CLI::IsMember({"runtime", "torch"}));
  cmd->add_option("--dtype", dtype, "Compute dtype of --engine torch: float32 or bfloat16")->capture_default_str();
  cmd->add_option("--ctx", n_ctx, "Runtime context length in tokens (default: the config's max_position_embeddings)");
  cmd->add_option("--cache-type", cache_type, "K/V cache element type: f32 or f16 (IEEE half: half the K/V bytes; as llama.cpp's -ctk f16 -ctv f16, its default); runtime)")
      ->capture_default_str();
  cmd->add_option("--temperature", sampling.temperature, "Sampling temperature; 0 = greedy (runtime)")->capture_default_str();
  cmd->add_option("--top-k", sampling.top_k, "Keep the k most likely tokens; 0 = all (runtime)")->capture_default_str();
  cmd->add_option("--top-p", sampling.top_p, "Nucleus sampling threshold (runtime)")->capture_default_str();
  cmd->add_option("--repeat-penalty", sampling.repetition_penalty, "Repetition penalty, 1 = off (runtime)")->capture_default_str();
  cmd->add_option("--repeat-last-n", sampling.repeat_last_n, "Tokens the repetition penalty looks back on (runtime)")->capture_default_str();
  cmd->add_option("--seed", sampling.seed, "Sampling seed (runtime)")->capture_default_str();
  cmd->add_option("--stop", stops, "Stop once the continuation contains this text (repeatable; needs the tokenizer; runtime)");
  cmd->add_flag("--ignore-eos", ignore_eos, "Keep generating past the end-of-sequence token");
  cmd->add_flag("--stats", stats, "Print cache bytes and decode tokens/s on stderr");
  cmd->callback([ids_opt, text_opt] {
    const runtime::CacheType kv_type = runtime::parse_cache_type(cache_type);
    RAD_CHECK(engine == "runtime" || kv_type == runtime::CacheType::kF32,
              "generate: --cache-type {} needs --engine runtime (the libtorch path keeps its cache in --dtype)", cache_type);
    std::vector<int64_t> ids = prompt_ids(dir, ids_text, ids_opt, text, text_opt, !no_special);
    std::vector<int64_t> tokens;
    std::string stop_reason;
    int64_t cache_bytes = 0;
    double prefill_s = 0, decode_s = 0;
    std::unique_ptr<Tokenizer> tok;
    if (text_opt->count() > 0 || !stops.empty()) tok = std::make_unique<Tokenizer>(Tokenizer::load(dir));
    if (engine == "torch") {
      RAD_CHECK(sampling.temperature == 0 && sampling.repetition_penalty == 1 && stops.empty(),
                "generate --engine torch is greedy only; sampling options and --stop need --engine runtime");
      CausalLM model = io::load_causal_lm(dir, io::parse_dtype(dtype));
      to_compute_device(*model);
      GenerateOptions options;
      options.max_new_tokens = max_new;
      options.stop_at_eos = !ignore_eos;
      GenerateResult r = generate_greedy(model, ids, options);
      tokens = r.tokens;
      cache_bytes = r.cache_bytes;
      prefill_s = r.prefill_seconds;
      decode_s = r.decode_seconds;
    } else {
      require_cpu_device("generate --engine runtime (use --engine torch on a GPU)");
      RAD_CHECK(io::parse_dtype(dtype) == at::kFloat,
                "generate --engine runtime computes in float32 with the weights as stored; --dtype {} needs --engine torch",
                dtype);
      auto model = runtime::Model::load(dir);
      // The context: --ctx, else the model's; KV buffers are sized for this prompt and generation only.
      const int64_t limit = n_ctx > 0 ? n_ctx : model->config().max_position_embeddings;
      const int64_t n_prompt = static_cast<int64_t>(ids.size());
      RAD_CHECK(n_prompt <= limit,
                "generate: the prompt has {} tokens but the context is {} tokens ({})", n_prompt, limit,
                n_ctx > 0 ? "--ctx" : "the model's max_position_embeddings; raise it with --ctx");
      runtime::SessionOptions so;
      so.n_ctx = std::min<int64_t>(limit, n_prompt + max_new);
      so.threads = global_options().threads;
      so.cache_type = kv_type;
      runtime::Session session(model, so);
      runtime::GenerateOptions options;
      // The last new token is never fed back, so prompt + max_new - 1 tokens must fit.
      options.max_new_tokens = std::min<int64_t>(max_new, limit - n_prompt + 1);
      if (options.max_new_tokens < max_new)
        log_warn("generate: the context of {} tokens leaves room for only {} new tokens", limit, options.max_new_tokens);
      options.stop_at_eos = !ignore_eos;
      options.eos_token_ids = model->config().eos_token_ids;
      options.sampling = sampling;
      options.stop_strings = stops;
      if (tok) options.decode = [&tok](const std::vector<int64_t>& t) { return tok->decode(t, true); };
      runtime::GenerateResult r = runtime::generate(session, ids, options);
      tokens = r.tokens;
      stop_reason = r.stop_reason;
      cache_bytes = r.cache_bytes;
      prefill_s = r.prefill_seconds;
      decode_s = r.decode_seconds;
    }
    if (text_opt->count() > 0) {
      // Decode prompt + continuation and drop the decoded prompt, so that decoders which treat the
      // first token specially (SentencePiece's leading space) see the continuation in context.
      std::string prompt_text = tok->decode(ids, /*skip_special_tokens=*/true);
      std::vector<int64_t> all = ids;
      all.insert(all.end(), tokens.begin(), tokens.end());
      std::string full = tok->decode(all, /*skip_special_tokens=*/true);
      std::string continuation = full.compare(0, prompt_text.size(), prompt_text) == 0
                                     ? full.substr(prompt_text.size())
                                     : tok->decode(tokens, /*skip_special_tokens=*/true);
      if (stop_reason == "stop_string")  // trim at the first stop string
        for (const auto& s : stops) {
          size_t at = continuation.find(s);
          if (!s.empty() && at != std::string::npos) continuation.resize(at);
        }
      std::fwrite(continuation.data(), 1, continuation.size(), stdout);
      std::fputc('\n', stdout);
    } else {
      std::printf("%s\n", nlohmann::json(tokens).dump().c_str());
    }
    double tps = decode_s > 0 && tokens.size() > 1 ? (tokens.size() - 1) / decode_s : 0;
    if (stats)
      std::fprintf(stderr,
                   "stats: engine=%s prompt_tokens=%zu new_tokens=%zu prefill_s=%.4f decode_tokens_per_s=%.2f "
                   "cache_bytes=%lld\n",
                   engine.c_str(), ids.size(), tokens.size(), prefill_s, tps, static_cast<long long>(cache_bytes));
    log_info("{}: prompt {} tokens, prefill {:.3f}s; {} new tokens, {:.1f} tokens/s; cache {} bytes", engine, ids.size(),
             prefill_s, tokens.size(), tps, cache_bytes);
  });
}

}  // namespace rad::cli
