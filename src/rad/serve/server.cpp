// HTTP with cpp-httplib, as Debian packages it (libcpp-httplib-dev 0.11.4: a header plus a shared
// library, so no vendored copy). Why it: it is in Debian, small and well kept; its server runs
// handlers on a thread pool (we size it for the sessions plus the queue, so waiting requests do not
// block /health or /metrics); a chunked content provider streams server-sent events and reports a
// failed write when the client has gone, which is how a disconnect cancels its sequence; and it
// bounds body size (413) and socket read/write time.
//
// Debian builds the library with OpenSSL, zlib and Brotli support; those macros change the
// header's declarations, so CMake defines them for this library as the .pc file says.
#include "rad/serve/server.h"

#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <csignal>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>

#include "rad/core/error.h"
#include "rad/core/log.h"
#include "rad/serve/api.h"
#include "rad/serve/chat_template.h"
#include "rad/serve/metrics.h"

namespace rad::serve {

using json = nlohmann::json;

namespace {
// Response bodies: invalid UTF-8 that reached a message (e.g. the JSON parser quoting the bytes it
// rejected) is replaced with U+FFFD instead of failing the dump.
std::string body(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }
}  // namespace

int64_t parse_byte_size(const std::string& text) {
  size_t used = 0;
  double v = 0;
  try {
    v = std::stod(text, &used);
  } catch (const std::exception&) {
    fail("'{}' is not a byte size (expected e.g. 2GiB, 512MiB, 1.5GB or a number of bytes)", text);
  }
  std::string unit = text.substr(used);
  static const std::pair<const char*, double> units[] = {
      {"", 1},          {"B", 1},         {"KB", 1e3},      {"MB", 1e6},      {"GB", 1e9},     {"TB", 1e12},
      {"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1099511627776.0}, {"K", 1 << 10}, {"M", 1 << 20},
      {"G", 1 << 30}};
  for (const auto& [name, scale] : units)
    if (unit == name) {
      RAD_CHECK(std::isfinite(v) && v > 0 && v * scale < 9e18, "'{}' must be a positive byte size", text);
      return static_cast<int64_t>(v * scale);
    }
  fail("'{}': unknown unit '{}' (expected B, KB, MB, GB, TB, KiB, MiB, GiB or TiB)", text, unit);
}

std::vector<int64_t> end_of_sequence_ids(const std::string& model_dir, const ModelConfig& config, const Tokenizer& tok) {
  std::vector<int64_t> ids = config.eos_token_ids;
  const std::string path = model_dir + "/generation_config.json";
  if (std::filesystem::exists(path)) {
    std::ifstream in(path);
    json g;
    try {
      g = json::parse(in);
    } catch (const json::exception& e) {
      fail("{}: invalid JSON: {}", path, e.what());
    }
    const json e = g.is_object() ? g.value("eos_token_id", json()) : json();
    for (const json& x : e.is_array() ? e : json::array({e}))
      if (x.is_number_integer()) ids.push_back(x.get<int64_t>());
  }
  if (auto id = tok.eos_id()) ids.push_back(*id);
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  return ids;
}

struct Server::Impl {
  ServerOptions o;
  std::shared_ptr<const runtime::Model> model;
  std::shared_ptr<const Tokenizer> tokenizer;
  std::optional<ChatTemplate> chat_template;
  std::string model_id;
  std::unique_ptr<Scheduler> scheduler;
  Metrics metrics;
  httplib::Server http;
  std::atomic<bool> stopping{false};
  std::atomic<uint64_t> next_id{0};
  uint64_t id_salt = 0;

  ApiContext api_context() const {
    return ApiContext{*tokenizer, chat_template, o.model_dir, model->config().n_vocab, scheduler->n_ctx(),
                      o.add_special_tokens};
  }

  static void send_error(httplib::Response& res, int status, const std::string& message, const std::string& type = "",
                         const std::string& param = "") {
    res.status = status;
    const std::string t = !type.empty()               ? type
                          : status == 503             ? "server_overloaded"
                          : status >= 500             ? "server_error"
                          : status == 404             ? "not_found_error"
                                                      : "invalid_request_error";
    res.set_content(body(error_json(message, t, param)) + "\n", "application/json");
  }

  std::string new_id(bool chat) {
    return fmt::format("{}-{:x}{:06x}", chat ? "chatcmpl" : "cmpl", id_salt & 0xffffffff, next_id++);
  }

  void completions(const httplib::Request& req, httplib::Response& res, bool chat) {
    CompletionRequest r;
    try {
      r = parse_completion_request(req.body, chat, api_context());
    } catch (const ApiError& e) {
      send_error(res, e.status, e.what(), e.type, e.param);
      return;
    }
    // n choices: n sequences with their own seeds; choice 0's prompt log-probabilities serve all.
    std::vector<std::shared_ptr<Sequence>> seqs;
    try {
      for (int64_t i = 0; i < r.n; ++i) {
        GenerationParams p = r.params;
        p.sampling.seed = choice_seed(r.params.sampling.seed, i);
        if (i > 0) p.prompt_logprobs = false;
        seqs.push_back(scheduler->submit(std::move(p)));
      }
    } catch (const Overloaded& e) {
      for (auto& s : seqs) s->cancel();
      res.set_header("Retry-After", std::to_string(e.retry_after_s));
      send_error(res, 503, e.what());
      return;
    }
    const size_t n = seqs.size();
    auto result = std::make_shared<CompletionResult>();
    result->id = new_id(chat);
    result->model = model_id;
    result->created = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
    result->prompt_tokens = seqs[0]->prompt_tokens();
    result->choices.resize(n);
    const auto wait_step = std::chrono::seconds(1);
    // A hard bound above the scheduler's own time limit, in case the decode thread is stuck.
    const auto hard_deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(
                                                  scheduler->options().request_timeout_s + 30));
    auto cancel_all = [seqs] {
      for (auto& s : seqs) s->cancel();
    };
    if (!r.stream) {
      for (size_t i = 0; i < n; ++i) {
        for (;;) {
          Sequence::Delta d = seqs[i]->next(Clock::now() + wait_step);
          result->choices[i].text += d.text;
          if (d.finished) break;
          if (stopping || Clock::now() > hard_deadline) {
            cancel_all();
            send_error(res, 503, stopping ? "the server is shutting down" : "the request exceeded its time limit");
            return;
          }
        }
      }
      for (size_t i = 0; i < n; ++i)
        if (!seqs[i]->error().empty()) {
          send_error(res, 500, "generation failed: " + seqs[i]->error(), "server_error");
          return;
        }
      const int64_t prompt_chars = utf8_chars(r.prompt_text);
      for (size_t i = 0; i < n; ++i) {
        ChoiceResult& c = result->choices[i];
        c.finish_reason = seqs[i]->finish_reason();
        result->completion_tokens += seqs[i]->completion_tokens();
        if (r.logprobs >= 0) {
          const int64_t reply_chars = utf8_chars(c.text);
          c.logprobs = chat ? chat_logprobs(*tokenizer, r.params.prompt, *seqs[i], reply_chars)
                            : completion_logprobs(*tokenizer, r.params.prompt, r.echo ? &seqs[0]->prompt_logprobs() : nullptr,
                                                  *seqs[i], prompt_chars, reply_chars);
        }
        if (r.echo) c.text = r.prompt_text + c.text;
      }
      res.set_content(body(completion_response(*result, chat)) + "\n", "application/json");
      return;
    }
    // Server-sent events: one `data: {...}` per text delta of a choice (its index says which), a
    // last chunk per choice with its finish_reason, the usage chunk when asked for, then
    // `data: [DONE]`. Idle seconds (prefill) send an SSE comment, which also finds a vanished
    // client. One choice waits up to a second for its text; several poll each other every 10 ms.
    res.set_header("Cache-Control", "no-cache");
    res.set_header("X-Accel-Buffering", "no");
    struct StreamState {
      std::vector<bool> first, done;
      Clock::time_point last_write;
    };
    auto st = std::make_shared<StreamState>();
    st->first.assign(n, true);
    st->done.assign(n, false);
    st->last_write = Clock::now();
    const bool include_usage = r.include_usage;
    const std::string echo_text = r.echo ? r.prompt_text : "";
    const auto wait = n == 1 ? std::chrono::duration_cast<Clock::duration>(wait_step)
                             : std::chrono::duration_cast<Clock::duration>(std::chrono::milliseconds(10));
    res.set_chunked_content_provider(
        "text/event-stream",
        [this, seqs, result, chat, include_usage, st, echo_text, wait, wait_step, hard_deadline,
         cancel_all](size_t, httplib::DataSink& sink) {
          auto send = [&](const std::string& event) {
            if (!sink.write(event.data(), event.size())) {
              cancel_all();  // the client is gone: free its sessions now
              return false;
            }
            st->last_write = Clock::now();
            return true;
          };
          bool waited = false;
          for (size_t i = 0; i < seqs.size(); ++i) {
            if (st->done[i]) continue;
            Sequence::Delta d = seqs[i]->next(waited ? Clock::now() : Clock::now() + wait);
            waited = true;
            if (stopping || Clock::now() > hard_deadline) {
              cancel_all();
              return false;
            }
            const bool first = st->first[i];
            const std::string text = first ? echo_text + d.text : d.text;
            if (!text.empty() || (first && chat)) {
              if (!send("data: " + body(stream_chunk(*result, chat, static_cast<int64_t>(i), text, first, std::nullopt)) + "\n\n"))
                return false;
              st->first[i] = false;
            }
            if (!d.finished) continue;
            if (!seqs[i]->error().empty()) {
              cancel_all();
              send("data: " + body(error_json("generation failed: " + seqs[i]->error(), "server_error", "")) + "\n\n");
              sink.done();
              return true;
            }
            st->done[i] = true;
            ChoiceResult& c = result->choices[i];
            c.finish_reason = seqs[i]->finish_reason();
            result->completion_tokens += seqs[i]->completion_tokens();
            if (!send("data: " + body(stream_chunk(*result, chat, static_cast<int64_t>(i), "", false, c.finish_reason)) + "\n\n"))
              return false;
          }
          if (std::find(st->done.begin(), st->done.end(), false) == st->done.end()) {
            if (include_usage && !send("data: " + body(usage_chunk(*result, chat)) + "\n\n")) return false;
            if (!send("data: [DONE]\n\n")) return false;
            sink.done();
            return true;
          }
          if (Clock::now() - st->last_write >= wait_step) return send(": waiting\n\n");
          return true;
        },
        [cancel_all](bool success) {
          if (!success) cancel_all();  // the connection ended before the stream did
        });
  }

  void routes() {
    http.Post("/v1/completions", [this](const httplib::Request& req, httplib::Response& res) { completions(req, res, false); });
    http.Post("/v1/chat/completions",
              [this](const httplib::Request& req, httplib::Response& res) { completions(req, res, true); });
    http.Get("/v1/models", [this](const httplib::Request&, httplib::Response& res) {
      json m = {{"id", model_id},
                {"object", "model"},
                {"created", 0},
                {"owned_by", "radistill"},
                {"meta", {{"hybrid", model->is_hybrid()},
                          {"n_ctx", scheduler->n_ctx()},
                          {"n_vocab", model->config().n_vocab},
                          {"parameters", model->parameter_count()},
                          {"cache_bytes_per_full_context", scheduler->reservation(scheduler->n_ctx())},
                          {"cache_type", runtime::cache_type_name(o.scheduler.cache_type)},
                          {"chat_template", chat_template.has_value()}}}};
      res.set_content(body(json({{"object", "list"}, {"data", json::array({m})}})) + "\n", "application/json");
    });
    http.Get("/health", [](const httplib::Request&, httplib::Response& res) {
      res.set_content("{\"status\":\"ok\"}\n", "application/json");
    });
    http.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
      res.set_content(metrics.render(scheduler->stats()), "text/plain; version=0.0.4");
    });
    // Any status >= 400 without a body (no route, 413 from the payload limit, bad requests that
    // httplib answers itself) gets the JSON error shape.
    http.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
      if (!res.body.empty()) return;
      const std::string message =
          res.status == 404   ? fmt::format("no route {} {} (see /v1/models, /v1/completions, /v1/chat/completions, /health, /metrics)",
                                            req.method, req.path)
          : res.status == 413 ? "the request body is too large"
                              : fmt::format("HTTP {}", res.status);
      send_error(res, res.status, message);
    });
    http.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
      std::string what = "unknown error";
      try {
        std::rethrow_exception(ep);
      } catch (const std::exception& e) {
        what = e.what();
      } catch (...) {
      }
      log_warn("serve: a request failed: {}", what);
      send_error(res, 500, "internal error: " + what);
    });
    http.set_logger([this](const httplib::Request& req, const httplib::Response& res) {
      metrics.count_request(req.path, res.status);
      log_debug("serve: {} {} -> {}", req.method, req.path, res.status);
    });
  }
};

Server::Server(const ServerOptions& options) : impl_(std::make_unique<Impl>()) {
  // A write to a client that has gone raises SIGPIPE, whose default action ends the process; the
  // failed write is handled instead (it cancels the sequence).
  std::signal(SIGPIPE, SIG_IGN);
  Impl& m = *impl_;
  m.o = options;
  RAD_CHECK(std::filesystem::is_regular_file(options.model_dir) ||  // a GGUF file carries its tokenizer
                std::filesystem::exists(options.model_dir + "/tokenizer.json"),
            "serve: {} has no tokenizer.json (the server takes and returns text)", options.model_dir);
  m.model = runtime::Model::load(options.model_dir);
  m.tokenizer = std::make_shared<const Tokenizer>(Tokenizer::load(options.model_dir));
  RAD_CHECK(m.tokenizer->vocab_size() <= m.model->config().n_vocab,
            "serve: the tokenizer of {} has {} tokens but the model's vocabulary is {}", options.model_dir,
            m.tokenizer->vocab_size(), m.model->config().n_vocab);
  m.chat_template = ChatTemplate::load(options.model_dir);
  // A reply ends at any end-of-sequence token the directory names, as Hugging Face's generate does
  // with generation_config.json: chat models often end a turn with a token config.json does not
  // list (Llama-3's <|eot_id|>), and the template's turns end with tokenizer_config's eos_token.
  SchedulerOptions sched = options.scheduler;
  sched.eos_ids = end_of_sequence_ids(options.model_dir, m.model->config(), *m.tokenizer);
  m.model_id = std::filesystem::path(options.model_dir).lexically_normal().filename().string();
  if (m.model_id.empty()) m.model_id = std::filesystem::path(options.model_dir).lexically_normal().parent_path().filename().string();
  m.scheduler = std::make_unique<Scheduler>(m.model, m.tokenizer, sched);
  m.id_salt = std::random_device{}();
  // One HTTP thread per session and queue slot, plus a few for /health, /metrics and 503 answers.
  const size_t threads = static_cast<size_t>(options.scheduler.max_sessions + options.scheduler.max_queue + 4);
  m.http.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  m.http.set_payload_max_length(options.max_body_bytes);
  m.http.set_read_timeout(options.io_timeout_s, 0);
  m.http.set_write_timeout(options.io_timeout_s, 0);
  m.http.set_keep_alive_timeout(5);
  m.routes();
  if (m.scheduler->n_ctx() > m.model->config().max_position_embeddings)
    log_warn("serve: --ctx {} is beyond the {} positions {} was trained on", m.scheduler->n_ctx(),
             m.model->config().max_position_embeddings, options.model_dir);
  if (!m.chat_template)
    log_warn("serve: {} has no chat_template in tokenizer_config.json (nor, for a GGUF file, tokenizer.chat_template); "
             "/v1/chat/completions will answer 400",
             options.model_dir);
}

Server::~Server() {
  stop();
  // The scheduler (declared before `http`) outlives the HTTP threads: members are destroyed in
  // reverse order, so `http` joins its handlers first.
}

int Server::bind() {
  Impl& m = *impl_;
  int port = m.o.port;
  if (port == 0) {
    port = m.http.bind_to_any_port(m.o.host);
    RAD_CHECK(port > 0, "serve: cannot bind {} to any port", m.o.host);
  } else {
    RAD_CHECK(m.http.bind_to_port(m.o.host, port), "serve: cannot bind {}:{} (in use, or not an address here)", m.o.host, port);
  }
  log_info("serve: {} ({}, context {} tokens, {} cache bytes each at full context with {} K/V, budget {} bytes, up to {} "
           "sessions) on http://{}:{}",
           m.model_id, m.model->is_hybrid() ? "hybrid" : "teacher", m.scheduler->n_ctx(),
           m.scheduler->reservation(m.scheduler->n_ctx()), runtime::cache_type_name(m.o.scheduler.cache_type),
           m.o.scheduler.cache_budget, m.o.scheduler.max_sessions, m.o.host,
           port);
  return port;
}

void Server::listen() { impl_->http.listen_after_bind(); }

void Server::stop() {
  impl_->stopping = true;
  impl_->http.stop();
  impl_->scheduler->shutdown();  // wakes requests waiting in the queue (503) and ends streams
}

bool Server::running() const { return impl_->http.is_running(); }

const std::string& Server::model_id() const { return impl_->model_id; }

}  // namespace rad::serve
