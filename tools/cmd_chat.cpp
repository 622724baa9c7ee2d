// radistill chat MODEL: an interactive session on the runtime. Each line read from stdin is
// appended to the conversation and the model's continuation is streamed to stdout; the session's
// caches persist between turns, so a turn only processes its own new tokens.
#include <cstdio>
#include <iostream>
#include <string>

#include "commands.h"
#include "rad/core/error.h"
#include "rad/core/log.h"
#include "rad/runtime/engine.h"
#include "rad/runtime/sampler.h"
#include "rad/tokenizer/tokenizer.h"

namespace rad::cli {

void register_chat(CLI::App& app) {
  auto* cmd = app.add_subcommand("chat",
                                 "Interactive generation on the runtime: each input line continues the conversation, the reply "
                                 "streams as it is generated, the cache is kept between turns (/reset starts over, /quit or EOF ends)");
  static std::string dir, cache_type = "f32";
  static int64_t max_new = 128, n_ctx = 0;
  static runtime::SamplingOptions sampling;
  static std::vector<std::string> stops;
  static bool stats = false, no_special = false;
  cmd->add_option("MODEL_DIR", dir, "Model directory (teacher or hybrid) with tokenizer.json, or a .gguf file")->required();
  cmd->add_option("--max-new-tokens", max_new, "Most tokens per reply")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--ctx", n_ctx, "Context length of the session (default: max_position_embeddings)");
  cmd->add_option("--cache-type", cache_type, "K/V cache element type: f32 or f16 (IEEE half: half the K/V bytes; as llama.cpp's -ctk f16 -ctv f16, its default))")->capture_default_str();
  cmd->add_option("--temperature", sampling.temperature, "Sampling temperature; 0 = greedy")->capture_default_str();
  cmd->add_option("--top-k", sampling.top_k, "Keep the k most likely tokens; 0 = all")->capture_default_str();
  cmd->add_option("--top-p", sampling.top_p, "Nucleus sampling threshold")->capture_default_str();
  cmd->add_option("--repeat-penalty", sampling.repetition_penalty, "Repetition penalty, 1 = off")->capture_default_str();
  cmd->add_option("--seed", sampling.seed, "Sampling seed")->capture_default_str();
  cmd->add_option("--stop", stops, "End a reply once it contains this text (repeatable)");
  cmd->add_flag("--stats", stats, "Print tokens/s and cache bytes after each reply on stderr");
  add_no_special_tokens_flag(cmd, no_special);
  cmd->callback([] {
    require_cpu_device("chat");
    sampling.validate();
    const runtime::CacheType kv_type = runtime::parse_cache_type(cache_type);
    auto model = runtime::Model::load(dir);
    Tokenizer tok = Tokenizer::load(dir);
    runtime::SessionOptions so;
    so.n_ctx = n_ctx > 0 ? n_ctx : model->config().max_position_embeddings;
    so.threads = global_options().threads;
    so.cache_type = kv_type;
    runtime::Session session(model, so);
    std::vector<int64_t> history;  // every token of the conversation (varies the seed per turn)
    int64_t pending = -1;          // the last reply token, not yet fed to the session
    std::string line;
    std::fprintf(stderr, "chat: %s (%s, context %lld tokens); /reset starts over, /quit ends\n", dir.c_str(),
                 model->is_hybrid() ? "hybrid" : "teacher", static_cast<long long>(session.n_ctx()));
    while (std::fputs("> ", stderr), std::getline(std::cin, line)) {
      if (line == "/quit") break;
      if (line == "/reset") {
        session.reset();
        history.clear();
        pending = -1;
        continue;
      }
      std::vector<int64_t> prompt;
      if (pending >= 0) prompt.push_back(pending);
      // The conversation is one prompt: its special tokens (BOS) come once, before the first line.
      std::vector<int64_t> enc = encode_prompt(tok, line + "\n", !no_special && session.length() == 0 && pending < 0);
      prompt.insert(prompt.end(), enc.begin(), enc.end());
      if (prompt.empty()) continue;
      const int64_t room = session.n_ctx() - session.length() - static_cast<int64_t>(prompt.size());
      if (room < 1) {
        std::fprintf(stderr, "chat: the context of %lld tokens is full; /reset to start over\n",
                     static_cast<long long>(session.n_ctx()));
        continue;
      }
      runtime::GenerateOptions o;
      o.max_new_tokens = std::min(max_new, room + 1);
      o.eos_token_ids = model->config().eos_token_ids;
      o.sampling = sampling;
      o.sampling.seed = sampling.seed + history.size();  // a different draw each turn, reproducible
      o.stop_strings = stops;
      std::vector<int64_t> reply;
      std::string shown;  // the reply text printed so far
      auto text_of = [&tok](const std::vector<int64_t>& t) { return tok.decode(t, /*skip_special_tokens=*/true); };
      auto show = [&](bool final) {
        std::string text = text_of(reply);
        // A token may end inside a UTF-8 sequence (decoded as U+FFFD until the rest arrives): wait.
        const bool partial = text.size() >= 3 && text.compare(text.size() - 3, 3, "\xEF\xBF\xBD") == 0;
        if ((final || !partial) && text.size() > shown.size() && text.compare(0, shown.size(), shown) == 0) {
          std::fwrite(text.data() + shown.size(), 1, text.size() - shown.size(), stdout);
          std::fflush(stdout);
          shown = text;
        }
      };
      o.decode = text_of;
      o.on_token = [&](int64_t t) {
        reply.push_back(t);
        show(false);
      };
      history.insert(history.end(), prompt.begin(), prompt.end());
      runtime::GenerateResult r = runtime::generate(session, prompt, o);
      show(true);
      std::fputc('\n', stdout);
      std::fflush(stdout);
      history.insert(history.end(), r.tokens.begin(), r.tokens.end());
      pending = r.stop_reason == "eos" ? -1 : r.tokens.back();
      if (stats)
        std::fprintf(stderr, "stats: new_tokens=%zu prefill_s=%.4f decode_tokens_per_s=%.1f cache_bytes=%lld length=%lld\n",
                     r.tokens.size(), r.prefill_seconds,
                     r.tokens.size() > 1 && r.decode_seconds > 0 ? (r.tokens.size() - 1) / r.decode_seconds : 0.0,
                     static_cast<long long>(session.cache_bytes().used()), static_cast<long long>(session.length()));
    }
  });
}

}  // namespace rad::cli
