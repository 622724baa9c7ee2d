#include <cstdio>

#include "commands.h"
#include "rad/core/log.h"
#include "rad/io/checkpoint.h"
#include "rad/model/generate.h"

namespace rad::cli {

void register_generate(CLI::App& app) {
  auto* cmd = app.add_subcommand("generate", "Greedy generation with a KV cache; prints the new token ids as JSON");
  static std::string dir, ids_text, dtype = "float32";
  static int64_t max_new = 32;
  static bool ignore_eos = false;
  cmd->add_option("MODEL_DIR", dir, "Hugging Face model directory")->required();
  cmd->add_option("--token-ids", ids_text, "Comma-separated prompt token ids")->required();
  cmd->add_option("--max-new-tokens", max_new, "Number of tokens to generate")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--dtype", dtype, "Compute dtype: float32 or bfloat16")->capture_default_str();
  cmd->add_flag("--ignore-eos", ignore_eos, "Keep generating past the end-of-sequence token");
  cmd->callback([] {
    std::vector<int64_t> ids = parse_token_ids(ids_text);
    CausalLM model = io::load_causal_lm(dir, io::parse_dtype(dtype));
    GenerateOptions options;
    options.max_new_tokens = max_new;
    options.stop_at_eos = !ignore_eos;
    GenerateResult r = generate_greedy(model, ids, options);
    std::printf("%s\n", nlohmann::json(r.tokens).dump().c_str());
    double tps = r.decode_seconds > 0 ? (r.tokens.size() > 1 ? (r.tokens.size() - 1) / r.decode_seconds : 0) : 0;
    log_info("prompt {} tokens, prefill {:.3f}s; {} new tokens, {:.1f} tokens/s; cache {} bytes", ids.size(),
             r.prefill_seconds, r.tokens.size(), tps, r.cache_bytes);
  });
}

}  // namespace rad::cli
