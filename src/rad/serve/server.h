// `radistill serve`: an OpenAI-compatible HTTP server on the runtime engine.
//
//   serve::Server server(options);   // loads the model, tokenizer and chat template
//   int port = server.bind();        // options.port 0: any free port
//   server.listen();                 // blocks until stop() (from another thread or a signal)
//
// Endpoints: POST /v1/completions, POST /v1/chat/completions (JSON, or server-sent events with
// "stream": true), GET /v1/models, GET /health, GET /metrics (Prometheus text). Errors are
// {"error": {"message", "type", "param", "code"}} with a 4xx/5xx status; 503s carry Retry-After.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "rad/model/config.h"
#include "rad/serve/scheduler.h"
#include "rad/tokenizer/tokenizer.h"

namespace rad::serve {

struct ServerOptions {
  std::string model_dir;
  std::string host = "127.0.0.1";
  int port = 8080;
  SchedulerOptions scheduler;
  size_t max_body_bytes = size_t{8} << 20;  // larger request bodies get 413
  int io_timeout_s = 30;                    // socket read/write timeout (a client that stops reading)
  bool add_special_tokens = true;           // on /v1/completions' string prompts (--no-special-tokens)
};

class Server {
 public:
  explicit Server(const ServerOptions& options);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  int bind();     // returns the port; throws rad::Error when the address cannot be bound
  void listen();  // serves until stop()
  // Stops accepting, ends running sequences and refuses queued ones; listen() then returns. Not
  // for a signal handler (it joins the decode thread): see tools/cmd_serve.cpp. Join the thread in
  // listen() before destroying the Server.
  void stop();
  bool running() const;  // listen() has started and stop() not yet been called
  const std::string& model_id() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The tokens that end a reply: config.json's eos_token_id, generation_config.json's (one or a
// list) and tokenizer_config.json's eos_token, without duplicates.
std::vector<int64_t> end_of_sequence_ids(const std::string& model_dir, const ModelConfig& config, const Tokenizer& tok);

// "2GiB", "512MiB", "1.5GB", "1000000" -> bytes; throws rad::Error naming the text.
int64_t parse_byte_size(const std::string& text);

}  // namespace rad::serve
