// The server's scheduler: one decode thread owns every running sequence and, in each iteration,
// advances each of them by one unit of work - one prompt chunk (prefill) or one new token - so a
// long prompt does not stall the other conversations and every sequence makes progress.
//
// Continuous batching: in each iteration, every sequence that has a token to feed back joins ONE
// runtime::BatchDecoder step - the projections, MLP and LM head run as one matmul over all of them
// (each weight row read once per iteration, not once per sequence), attention and SSM steps per
// sequence against its own cache. Sequences join the batch as soon as their prompt is in and leave
// it when they finish, iteration by iteration. Prompt chunks run on each sequence's own
// runtime::Session (K/V of its kept groups + SSM state, sized for its prompt + max_tokens), one
// sequence at a time. `threads` is the thread count of the decoder and of each Session.
//
// Admission: a sequence reserves Model::cache_bytes(its context) against the cache budget and one
// of max_sessions slots before its Session is allocated, so the caches never exceed the budget.
// When either is full, requests wait in a bounded FIFO queue; a full queue, or a wait longer than
// queue_timeout, is refused with Overloaded (HTTP 503 + Retry-After). Scratch buffers of a Session
// (one prefill chunk of activations, logits) and of the BatchDecoder (one row of activations and
// logits per sequence) are not counted in the budget.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "rad/runtime/engine.h"
#include "rad/runtime/sampler.h"
#include "rad/tokenizer/tokenizer.h"

namespace rad::serve {

using Clock = std::chrono::steady_clock;

struct SchedulerOptions {
  int64_t cache_budget = int64_t{2} << 30;  // bytes of K/V + SSM state over all sessions
  int64_t max_sessions = 64;
  int64_t max_queue = 64;            // requests waiting for admission
  double queue_timeout_s = 30;       // longest wait for admission
  double request_timeout_s = 600;    // a sequence running longer ends with finish_reason "length"
  int64_t n_ctx = 0;                 // largest context of a sequence; 0: max_position_embeddings
  int threads = 1;                   // threads of each Session's matmuls
  int64_t prefill_chunk = 32;        // prompt tokens per scheduler iteration and sequence
  runtime::CacheType cache_type = runtime::CacheType::kF32;  // K/V element type (reservations count its bytes)
  std::vector<int64_t> eos_ids;      // tokens that end a reply (unless ignore_eos); empty: config.json's
};

struct GenerationParams {
  std::vector<int64_t> prompt;  // non-empty, ids < n_vocab, size <= n_ctx (checked by the API layer)
  int64_t max_tokens = 16;      // clamped to the context: prompt + max_tokens - 1 <= n_ctx; 0: prompt only
  runtime::SamplingOptions sampling;
  std::vector<std::string> stop;
  bool ignore_eos = false;
  // Log-probabilities (runtime::log_softmax of the raw logits, before penalty and temperature):
  // logprobs >= 0 records each new token's and its `logprobs` most likely alternatives;
  // prompt_logprobs records every prompt token's too (from the prefill's logits of every position),
  // with as many alternatives.
  int64_t logprobs = -1;
  bool prompt_logprobs = false;
};

// One position's log-probability: the token there, its log-probability (NaN for the first prompt
// token, which has no context) and the most likely tokens there, most likely first.
struct TokenLogprob {
  int64_t token = -1;
  float logprob = 0;
  std::vector<std::pair<int64_t, float>> top;
};

// A 503: the server is full. `retry_after_s` is the hint for the Retry-After header.
struct Overloaded : std::runtime_error {
  Overloaded(const std::string& message, int retry_after_s) : std::runtime_error(message), retry_after_s(retry_after_s) {}
  int retry_after_s;
};

// One request's sequence, shared by the HTTP thread (reads the text) and the decode thread.
class Sequence {
 public:
  struct Delta {
    std::string text;      // new final text since the last call
    bool finished = false; // the reply is complete (finish_reason / error set)
  };
  // Waits until new text arrives, the sequence ends, or `until`.
  Delta next(Clock::time_point until);
  // The client is gone: the decode thread drops the sequence and frees its cache.
  void cancel() { cancelled_ = true; }

  // Valid once finished.
  std::string finish_reason() const;  // "stop" (EOS or a stop string) or "length" (max_tokens, context, time)
  std::string error() const;          // non-empty when generation failed
  int64_t prompt_tokens() const { return prompt_tokens_; }
  int64_t completion_tokens() const { return completion_tokens_.load(); }
  int64_t reserved_bytes() const { return reserved_bytes_; }
  // Valid once finished. tokens(): every token sampled, an end-of-sequence token that ended the
  // reply included (ended_by_eos()); stopped_by_string(): a stop string cut the text. logprobs():
  // one entry per token of tokens() when params.logprobs >= 0; prompt_logprobs(): one per prompt
  // token when params.prompt_logprobs.
  const std::vector<int64_t>& tokens() const { return tokens_; }
  const std::vector<TokenLogprob>& logprobs() const { return logprobs_; }
  const std::vector<TokenLogprob>& prompt_logprobs() const { return prompt_logprobs_; }
  bool ended_by_eos() const { return ended_by_eos_; }
  bool stopped_by_string() const { return stopped_by_string_; }

 private:
  friend class Scheduler;
  enum class State { kQueued, kAdmitted, kRefused, kDone };
  void publish(const std::string& text, bool finished, const std::string& reason = "", const std::string& error = "");

  GenerationParams params_;
  int64_t n_ctx_ = 0, reserved_bytes_ = 0, prompt_tokens_ = 0;
  Clock::time_point deadline_;
  State state_ = State::kQueued;  // guarded by the scheduler's mutex
  std::atomic<bool> cancelled_{false};
  std::atomic<int64_t> completion_tokens_{0};
  mutable std::mutex m_;
  std::condition_variable cv_;
  std::string pending_, finish_reason_, error_;
  bool finished_ = false;
  // Written by the decode thread before the publish() that finishes the sequence; read after.
  std::vector<int64_t> tokens_;
  std::vector<TokenLogprob> logprobs_, prompt_logprobs_;
  bool ended_by_eos_ = false, stopped_by_string_ = false;
};

struct SchedulerStats {
  int64_t active = 0;               // sequences admitted (running or about to)
  int64_t queued = 0;
  int64_t reserved_bytes = 0;       // cache reservations of the admitted sequences
  int64_t allocated_bytes = 0;      // cache bytes the running Sessions actually hold
  int64_t cache_budget = 0;
  int64_t max_sessions = 0;
  int64_t tokens_generated = 0;     // since start
  int64_t prompt_tokens = 0;        // since start (prefilled)
  double tokens_per_s = 0;          // generated over the last 10 s
  int64_t rejected = 0;             // refused with Overloaded
  int64_t cancelled = 0;            // dropped because the client went away
  int64_t decode_steps = 0;         // batched decode steps run (since start)
  int64_t decode_rows = 0;          // tokens decoded in them: rows / steps = the mean batch size
  int64_t decode_batch_max = 0;     // the largest batch of one step
};

class Scheduler {
 public:
  Scheduler(std::shared_ptr<const runtime::Model> model, std::shared_ptr<const Tokenizer> tokenizer,
            const SchedulerOptions& options);
  ~Scheduler();  // shutdown()
  // Stops the decode thread: running and admitted sequences end with an error, queued requests are
  // refused, new ones get Overloaded. Idempotent.
  void shutdown();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Blocks until the sequence is admitted; throws Overloaded when the queue is full or the wait
  // exceeds queue_timeout_s.
  std::shared_ptr<Sequence> submit(GenerationParams params);

  SchedulerStats stats() const;
  const SchedulerOptions& options() const { return o_; }
  int64_t n_ctx() const { return o_.n_ctx; }
  // Cache bytes reserved for a sequence of this many tokens (prompt + max_tokens).
  int64_t reservation(int64_t tokens) const;

 private:
  struct Running;
  void loop();
  bool fits(int64_t bytes) const;  // with mutex_ held
  void admit_queued();             // with mutex_ held
  void release(Sequence& s);       // with mutex_ held
  // Each returns false when the sequence has ended (its reply published).
  bool check(Running& r);                     // cancelled by the client, or past its time limit
  bool prefill(Running& r);                   // one prompt chunk; after the last, the first new token
  bool emit(Running& r, const float* logits); // samples, publishes and ends on EOS / stop / max_tokens

  std::shared_ptr<const runtime::Model> model_;
  std::shared_ptr<const Tokenizer> tok_;
  SchedulerOptions o_;
  mutable std::mutex mutex_;
  std::condition_variable work_cv_, admit_cv_;
  std::deque<std::shared_ptr<Sequence>> queue_;    // waiting for admission
  std::vector<std::shared_ptr<Sequence>> admitted_; // reserved, Session not yet created
  int64_t n_admitted_ = 0, reserved_ = 0, rejected_ = 0, cancelled_ = 0;
  bool stop_ = false;
  std::atomic<int64_t> allocated_{0}, tokens_generated_{0}, prompt_tokens_{0};
  std::atomic<int64_t> decode_steps_{0}, decode_rows_{0}, decode_batch_max_{0};
  std::deque<std::pair<int64_t, int64_t>> rate_;  // (second, tokens generated in it), last 10 s
  std::mutex join_mutex_;  // shutdown() may be called from two threads
  std::thread thread_;
};

}  // namespace rad::serve
