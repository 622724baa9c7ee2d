#include <cstdio>

#include "commands.h"
#include "rad/core/log.h"
#include "rad/io/checkpoint.h"
#include "rad/model/generate.h"
#include "rad/tokenizer/tokenizer.h"

namespace rad::cli {

void register_generate(CLI::App& app) {
  auto* cmd = app.add_subcommand("generate",
                                 "Greedy generation with a decode cache (teacher or hybrid); prints the new token ids as JSON (--token-ids) or the "
                                 "decoded continuation (--text)");
  static std::string dir, ids_text, text, dtype = "float32";
  static int64_t max_new = 32;
  static bool ignore_eos = false, stats = false;
  cmd->add_option("MODEL_DIR", dir, "Hugging Face model directory")->required();
  auto* ids_opt = cmd->add_option("--token-ids", ids_text, "Comma-separated prompt token ids");
  auto* text_opt = cmd->add_option("--text", text,
                                   "Prompt text, tokenized with MODEL_DIR's tokenizer; prints only the decoded continuation");
  ids_opt->excludes(text_opt);
  cmd->add_option("--max-new-tokens", max_new, "Number of tokens to generate")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--dtype", dtype, "Compute dtype: float32 or bfloat16")->capture_default_str();
  cmd->add_flag("--ignore-eos", ignore_eos, "Keep generating past the end-of-sequence token");
  cmd->add_flag("--stats", stats, "Print cache bytes and decode tokens/s on stderr");
  cmd->callback([ids_opt, text_opt] {
    std::vector<int64_t> ids = prompt_ids(dir, ids_text, ids_opt, text, text_opt);
    CausalLM model = io::load_causal_lm(dir, io::parse_dtype(dtype));
    GenerateOptions options;
    options.max_new_tokens = max_new;
    options.stop_at_eos = !ignore_eos;
    GenerateResult r = generate_greedy(model, ids, options);
    if (text_opt->count() > 0) {
      // Decode prompt + continuation and drop the decoded prompt, so that decoders which treat the
      // first token specially (SentencePiece's leading space) see the continuation in context.
      Tokenizer tok = Tokenizer::load(dir);
      std::string prompt_text = tok.decode(ids, /*skip_special_tokens=*/true);
      std::vector<int64_t> all = ids;
      all.insert(all.end(), r.tokens.begin(), r.tokens.end());
      std::string full = tok.decode(all, /*skip_special_tokens=*/true);
      std::string continuation = full.compare(0, prompt_text.size(), prompt_text) == 0
                                     ? full.substr(prompt_text.size())
                                     : tok.decode(r.tokens, /*skip_special_tokens=*/true);
      std::fwrite(continuation.data(), 1, continuation.size(), stdout);
      std::fputc('\n', stdout);
    } else {
      std::printf("%s\n", nlohmann::json(r.tokens).dump().c_str());
    }
    double tps = r.decode_seconds > 0 ? (r.tokens.size() > 1 ? (r.tokens.size() - 1) / r.decode_seconds : 0) : 0;
    if (stats)
      std::fprintf(stderr, "stats: prompt_tokens=%zu new_tokens=%zu prefill_s=%.4f decode_tokens_per_s=%.2f cache_bytes=%lld\n",
                   ids.size(), r.tokens.size(), r.prefill_seconds, tps, static_cast<long long>(r.cache_bytes));
    log_info("prompt {} tokens, prefill {:.3f}s; {} new tokens, {:.1f} tokens/s; cache {} bytes", ids.size(),
             r.prefill_seconds, r.tokens.size(), tps, r.cache_bytes);
  });
}

}  // namespace rad::cli
