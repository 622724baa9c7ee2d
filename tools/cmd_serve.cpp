// radistill serve MODEL_DIR: the OpenAI-compatible server (src/rad/serve). This file only maps the
// command line onto serve::ServerOptions and handles SIGINT/SIGTERM.
#include <pthread.h>

#include <csignal>
#include <thread>

#include "commands.h"
#include "rad/core/error.h"
#include "rad/serve/server.h"

namespace rad::cli {

void register_serve(CLI::App& app) {
  auto* cmd = app.add_subcommand("serve",
                                 "OpenAI-compatible HTTP server on the runtime: /v1/completions, /v1/chat/completions "
                                 "(streaming or not), /v1/models, /health, /metrics; admission by cache budget");
  static serve::ServerOptions o;
  static std::string budget = "2GiB", max_body = "8MiB", cache_type = "f32";
  cmd->add_option("MODEL_DIR", o.model_dir, "Model directory (teacher or hybrid) with tokenizer.json, or a .gguf file")->required();
  cmd->add_option("--host", o.host, "Address to listen on")->capture_default_str();
  cmd->add_option("--port", o.port, "Port to listen on (0: any free port, printed at start)")->capture_default_str();
  cmd->add_option("--cache-budget", budget, "Cache bytes (K/V + SSM state) all sessions together may hold")
      ->capture_default_str();
  cmd->add_option("--max-sessions", o.scheduler.max_sessions, "Most sequences generating at once")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--max-queue", o.scheduler.max_queue, "Most requests waiting for a session; more get 503")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--queue-timeout", o.scheduler.queue_timeout_s, "Seconds a request may wait for a session before 503")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--request-timeout", o.scheduler.request_timeout_s,
                  "Seconds a request may run; then it ends with finish_reason \"length\"")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--ctx", o.scheduler.n_ctx, "Largest context of a sequence in tokens (default: max_position_embeddings)");
  cmd->add_option("--prefill-chunk", o.scheduler.prefill_chunk,
                  "Prompt tokens a sequence prefills per scheduler iteration (smaller: less stall for the others)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--cache-type", cache_type, "K/V cache element type: f32 or f16 (IEEE half: half the K/V bytes; as llama.cpp's -ctk f16 -ctv f16, its default); budget, admission and /metrics count its real bytes)")
      ->capture_default_str();
  cmd->add_option("--max-body", max_body, "Largest request body; larger ones get 413")->capture_default_str();
  static bool no_special = false;
  add_no_special_tokens_flag(cmd, no_special);
  cmd->callback([] {
    require_cpu_device("serve");
    o.scheduler.cache_type = runtime::parse_cache_type(cache_type);
    o.add_special_tokens = !no_special;
    o.scheduler.cache_budget = serve::parse_byte_size(budget);
    o.max_body_bytes = static_cast<size_t>(serve::parse_byte_size(max_body));
    // --threads (global): threads of each session's matmuls; default 1, since sessions interleave.
    o.scheduler.threads = global_options().threads > 0 ? global_options().threads : 1;
    // SIGINT/SIGTERM stop the server from a thread of their own (sigwait), not from a signal
    // handler: stopping joins threads. Blocked here, before any thread starts, so all inherit it.
    // (A signal the parent set to be ignored - SIGINT for a shell's background job - stays ignored.)
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
    serve::Server server(o);
    const int port = server.bind();
    std::printf("listening on http://%s:%d\n", o.host.c_str(), port);
    std::fflush(stdout);
    std::thread waiter([&] {
      int sig = 0;
      sigwait(&stop_signals, &sig);
      server.stop();
    });
    server.listen();
    pthread_kill(waiter.native_handle(), SIGTERM);  // listen() ended without a signal: release the waiter
    waiter.join();
  });
}

}  // namespace rad::cli
