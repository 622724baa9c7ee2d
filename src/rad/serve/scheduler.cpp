#include "rad/serve/scheduler.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "rad/core/error.h"
#include "rad/core/log.h"
#include "rad/serve/text_stream.h"

namespace rad::serve {

// ---------------------------------------------------------------- Sequence

void Sequence::publish(const std::string& text, bool finished, const std::string& reason, const std::string& error) {
  {
    std::lock_guard<std::mutex> lk(m_);
    pending_ += text;
    if (finished) {
      finished_ = true;
      finish_reason_ = reason;
      error_ = error;
    }
  }
  cv_.notify_all();
}

Sequence::Delta Sequence::next(Clock::time_point until) {
  std::unique_lock<std::mutex> lk(m_);
  cv_.wait_until(lk, until, [&] { return !pending_.empty() || finished_; });
  Delta d;
  d.text.swap(pending_);
  d.finished = finished_;
  return d;
}

std::string Sequence::finish_reason() const {
  std::lock_guard<std::mutex> lk(m_);
  return finish_reason_;
}

std::string Sequence::error() const {
  std::lock_guard<std::mutex> lk(m_);
  return error_;
}

// ---------------------------------------------------------------- Scheduler

// Decode-thread state of a running sequence.
struct Scheduler::Running {
  std::shared_ptr<Sequence> seq;
  std::unique_ptr<runtime::Session> session;
  std::unique_ptr<runtime::Sampler> sampler;
  std::unique_ptr<TextStream> text;
  std::vector<int64_t> history;  // prompt + generated (the repetition penalty looks back on it)
  std::vector<float> logits;
  std::vector<float> chunk_logits;  // [prefill_chunk, n_vocab]: every prompt position's (prompt_logprobs only)
  std::vector<float> logprobs;      // [n_vocab]: log_softmax scratch (logprobs >= 0 only)
  int64_t prefilled = 0, generated = 0, last = -1, allocated = 0;
  bool alive = true;  // false: finished, failed or cancelled; removed at the end of the iteration
};

namespace {
constexpr int kRetryAfterS = 1;
constexpr int64_t kRateWindowS = 10;
int64_t now_seconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(Clock::now().time_since_epoch()).count();
}
}  // namespace

Scheduler::Scheduler(std::shared_ptr<const runtime::Model> model, std::shared_ptr<const Tokenizer> tokenizer,
                     const SchedulerOptions& options)
    : model_(std::move(model)), tok_(std::move(tokenizer)), o_(options) {
  if (o_.n_ctx <= 0) o_.n_ctx = model_->config().max_position_embeddings;
  RAD_CHECK(o_.max_sessions >= 1, "serve: --max-sessions must be >= 1, got {}", o_.max_sessions);
  RAD_CHECK(o_.max_queue >= 0, "serve: --max-queue must be >= 0, got {}", o_.max_queue);
  RAD_CHECK(o_.prefill_chunk >= 1, "serve: the prefill chunk must be >= 1, got {}", o_.prefill_chunk);
  RAD_CHECK(o_.queue_timeout_s >= 0 && o_.request_timeout_s > 0, "serve: timeouts must be positive");
  const int64_t full = reservation(o_.n_ctx);
  RAD_CHECK(full <= o_.cache_budget,
            "serve: --cache-budget {} bytes holds no session of --ctx {} tokens, which needs {} bytes of cache; "
            "raise the budget or lower --ctx",
            o_.cache_budget, o_.n_ctx, full);
  thread_ = std::thread([this] { loop(); });
}

Scheduler::~Scheduler() { shutdown(); }

void Scheduler::shutdown() {
  {
    std::lock_guard<std::mutex> lk(mutex_);
    stop_ = true;
  }
  work_cv_.notify_all();
  std::lock_guard<std::mutex> lk(join_mutex_);
  if (thread_.joinable()) thread_.join();
}

int64_t Scheduler::reservation(int64_t tokens) const { return model_->cache_bytes(tokens, o_.cache_type); }

bool Scheduler::fits(int64_t bytes) const { return n_admitted_ < o_.max_sessions && reserved_ + bytes <= o_.cache_budget; }

void Scheduler::admit_queued() {
  bool any = false;
  // FIFO: the head waits for room even when a smaller request behind it would fit, so a long
  // request is not starved by a stream of short ones.
  while (!queue_.empty() && fits(queue_.front()->reserved_bytes_)) {
    auto s = queue_.front();
    queue_.pop_front();
    ++n_admitted_;
    reserved_ += s->reserved_bytes_;
    s->state_ = Sequence::State::kAdmitted;
    admitted_.push_back(s);
    any = true;
  }
  if (any) {
    admit_cv_.notify_all();
    work_cv_.notify_all();
  }
}

void Scheduler::release(Sequence& s) {
  --n_admitted_;
  reserved_ -= s.reserved_bytes_;
  s.state_ = Sequence::State::kDone;
  admit_queued();
}

std::shared_ptr<Sequence> Scheduler::submit(GenerationParams params) {
  const int64_t n_prompt = static_cast<int64_t>(params.prompt.size());
  RAD_CHECK(n_prompt >= 1 && n_prompt <= o_.n_ctx, "serve: the prompt has {} tokens; the context holds 1 to {}", n_prompt,
            o_.n_ctx);
  params.sampling.validate();
  RAD_CHECK(params.logprobs <= 1000, "serve: {} log-probability alternatives is too many", params.logprobs);
  // The last new token is never fed back: prompt + max_tokens - 1 tokens must fit the context.
  // max_tokens 0 (the prompt alone, e.g. for its log-probabilities) still holds the whole prompt.
  params.max_tokens = std::clamp<int64_t>(params.max_tokens, 0, o_.n_ctx - n_prompt + 1);
  auto s = std::make_shared<Sequence>();
  s->n_ctx_ = n_prompt + std::max<int64_t>(params.max_tokens, 1) - 1;
  s->reserved_bytes_ = reservation(s->n_ctx_);
  s->prompt_tokens_ = n_prompt;
  const auto now = Clock::now();
  s->deadline_ = now + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(o_.request_timeout_s));
  s->params_ = std::move(params);

  std::unique_lock<std::mutex> lk(mutex_);
  if (stop_) throw Overloaded("the server is shutting down", kRetryAfterS);
  if (queue_.empty() && fits(s->reserved_bytes_)) {
    ++n_admitted_;
    reserved_ += s->reserved_bytes_;
    s->state_ = Sequence::State::kAdmitted;
    admitted_.push_back(s);
    work_cv_.notify_all();
    return s;
  }
  if (static_cast<int64_t>(queue_.size()) >= o_.max_queue) {
    ++rejected_;
    throw Overloaded(fmt::format("the server is full: {} of {} sessions running, {} of {} cache bytes reserved, and the "
                                 "queue of {} waiting requests is full",
                                 n_admitted_, o_.max_sessions, reserved_, o_.cache_budget, o_.max_queue),
                     kRetryAfterS);
  }
  queue_.push_back(s);
  const auto until = now + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(o_.queue_timeout_s));
  admit_cv_.wait_until(lk, until, [&] { return s->state_ != Sequence::State::kQueued; });
  if (s->state_ == Sequence::State::kQueued) {
    queue_.erase(std::find(queue_.begin(), queue_.end(), s));
    s->state_ = Sequence::State::kRefused;
    ++rejected_;
    throw Overloaded(fmt::format("no session became free within {} s ({} of {} sessions running, {} of {} cache bytes "
                                 "reserved)",
                                 o_.queue_timeout_s, n_admitted_, o_.max_sessions, reserved_, o_.cache_budget),
                     kRetryAfterS);
  }
  if (s->state_ == Sequence::State::kRefused) throw Overloaded("the server is shutting down", kRetryAfterS);
  return s;
}

SchedulerStats Scheduler::stats() const {
  std::lock_guard<std::mutex> lk(mutex_);
  SchedulerStats st;
  st.active = n_admitted_;
  st.queued = static_cast<int64_t>(queue_.size());
  st.reserved_bytes = reserved_;
  st.allocated_bytes = allocated_.load();
  st.cache_budget = o_.cache_budget;
  st.max_sessions = o_.max_sessions;
  st.tokens_generated = tokens_generated_.load();
  st.prompt_tokens = prompt_tokens_.load();
  st.rejected = rejected_;
  st.cancelled = cancelled_;
  st.decode_steps = decode_steps_.load();
  st.decode_rows = decode_rows_.load();
  st.decode_batch_max = decode_batch_max_.load();
  const int64_t now = now_seconds();
  int64_t n = 0;
  for (const auto& [sec, count] : rate_)
    if (sec > now - kRateWindowS) n += count;  // the last 10 s, the current one included
  st.tokens_per_s = static_cast<double>(n) / kRateWindowS;
  return st;
}

bool Scheduler::check(Running& r) {
  Sequence& s = *r.seq;
  if (s.cancelled_) {
    s.publish("", true, "", "cancelled: the client disconnected");
    std::lock_guard<std::mutex> lk(mutex_);
    ++cancelled_;
    return false;
  }
  if (Clock::now() > s.deadline_) {  // the request time bound: end cleanly with what we have
    log_warn("serve: a request reached the {} s time limit after {} tokens", o_.request_timeout_s, r.generated);
    s.publish(r.text->finish(), true, "length");
    return false;
  }
  return true;
}

bool Scheduler::prefill(Running& r) {
  Sequence& s = *r.seq;
  const GenerationParams& p = s.params_;
  const int64_t n_prompt = static_cast<int64_t>(p.prompt.size());
  const int64_t n = std::min(o_.prefill_chunk, n_prompt - r.prefilled);
  const int64_t V = model_->config().n_vocab;
  const float* out;
  if (p.prompt_logprobs) {
    // Logits of every position of the chunk: position i's give prompt token i + 1's log-probability.
    r.chunk_logits.resize(static_cast<size_t>(n * V));
    out = r.session->forward(p.prompt.data() + r.prefilled, n, r.chunk_logits.data());
    if (r.prefilled == 0) {
      TokenLogprob first;
      first.token = p.prompt[0];
      first.logprob = std::numeric_limits<float>::quiet_NaN();
      s.prompt_logprobs_.push_back(std::move(first));
    }
    for (int64_t t = 0; t < n && r.prefilled + t + 1 < n_prompt; ++t) {
      runtime::log_softmax(r.chunk_logits.data() + t * V, V, r.logprobs.data());
      TokenLogprob e;
      e.token = p.prompt[r.prefilled + t + 1];
      e.logprob = r.logprobs[e.token];
      runtime::top_k(r.logprobs.data(), V, std::max<int64_t>(p.logprobs, 0), e.top);
      s.prompt_logprobs_.push_back(std::move(e));
    }
  } else {
    out = r.session->forward(p.prompt.data() + r.prefilled, n);
  }
  r.prefilled += n;
  prompt_tokens_ += n;
  if (r.prefilled < n_prompt) return true;
  if (p.max_tokens == 0) {  // the prompt alone: nothing to sample
    s.publish(r.text->finish(), true, "length");
    return false;
  }
  return emit(r, out);  // the prompt's last logits give the first new token
}

bool Scheduler::emit(Running& r, const float* out) {
  Sequence& s = *r.seq;
  const GenerationParams& p = s.params_;
  const int64_t V = static_cast<int64_t>(r.logits.size());
  // The log-probabilities come from the raw logits, before the sampler's penalty and temperature.
  if (p.logprobs >= 0) runtime::log_softmax(out, V, r.logprobs.data());
  std::copy(out, out + V, r.logits.begin());
  const int64_t t = r.sampler->sample(r.logits.data(), r.history);
  s.tokens_.push_back(t);
  if (p.logprobs >= 0) {
    TokenLogprob e;
    e.token = t;
    e.logprob = r.logprobs[t];
    runtime::top_k(r.logprobs.data(), V, p.logprobs, e.top);
    s.logprobs_.push_back(std::move(e));
  }
  r.history.push_back(t);
  r.last = t;
  ++r.generated;
  s.completion_tokens_ = r.generated;
  ++tokens_generated_;
  {
    std::lock_guard<std::mutex> lk(mutex_);
    const int64_t sec = now_seconds();
    if (rate_.empty() || rate_.back().first != sec) rate_.emplace_back(sec, 0);
    ++rate_.back().second;
    while (rate_.size() > static_cast<size_t>(kRateWindowS + 1)) rate_.pop_front();
  }
  const auto& eos = o_.eos_ids.empty() ? model_->config().eos_token_ids : o_.eos_ids;
  if (!p.ignore_eos && std::find(eos.begin(), eos.end(), t) != eos.end()) {
    s.ended_by_eos_ = true;
    s.publish(r.text->finish(), true, "stop");
    return false;
  }
  std::string delta = r.text->push(t);
  if (r.text->stopped()) {
    s.stopped_by_string_ = true;
    s.publish(delta, true, "stop");
    return false;
  }
  if (r.generated >= p.max_tokens) {
    delta += r.text->finish();
    s.publish(delta, true, "length");
    return false;
  }
  if (!delta.empty()) s.publish(delta, false);
  return true;
}

void Scheduler::loop() {
  std::vector<std::unique_ptr<Running>> running;
  // The batched decode step and its inputs, reused every iteration: the decoder's scratch grows to
  // the largest batch and context seen (at most max_sessions rows), then stays.
  runtime::BatchDecoderOptions bo;
  bo.threads = o_.threads;
  runtime::BatchDecoder decoder(model_, bo);
  std::vector<Running*> batch;
  std::vector<runtime::Session*> batch_sessions;
  std::vector<int64_t> batch_tokens;
  batch.reserve(static_cast<size_t>(o_.max_sessions));
  batch_sessions.reserve(static_cast<size_t>(o_.max_sessions));
  batch_tokens.reserve(static_cast<size_t>(o_.max_sessions));
  for (;;) {
    std::vector<std::shared_ptr<Sequence>> fresh;
    {
      std::unique_lock<std::mutex> lk(mutex_);
      work_cv_.wait(lk, [&] { return stop_ || !admitted_.empty() || !running.empty(); });
      if (stop_) break;
      fresh.swap(admitted_);
    }
    for (auto& s : fresh) {
      auto r = std::make_unique<Running>();
      r->seq = s;
      try {
        runtime::SessionOptions so;
        so.n_ctx = s->n_ctx_;
        so.prefill_chunk = o_.prefill_chunk;
        so.threads = o_.threads;
        so.cache_type = o_.cache_type;
        r->session = std::make_unique<runtime::Session>(model_, so);
        r->sampler = std::make_unique<runtime::Sampler>(s->params_.sampling, model_->config().n_vocab);
        const auto& prompt = s->params_.prompt;
        std::vector<int64_t> context(prompt.end() - std::min<size_t>(prompt.size(), 4), prompt.end());
        r->text = std::make_unique<TextStream>(*tok_, std::move(context), s->params_.stop);
        r->history = prompt;
        r->logits.resize(static_cast<size_t>(model_->config().n_vocab));
        if (s->params_.logprobs >= 0 || s->params_.prompt_logprobs)
          r->logprobs.resize(static_cast<size_t>(model_->config().n_vocab));
        r->allocated = r->session->cache_bytes().allocated();
        allocated_ += r->allocated;
        running.push_back(std::move(r));
      } catch (const std::exception& e) {
        log_warn("serve: cannot start a sequence: {}", e.what());
        s->publish("", true, "", std::string("cannot start the sequence: ") + e.what());
        std::lock_guard<std::mutex> lk(mutex_);
        release(*s);
      }
    }
    // One iteration: every sequence still prefilling runs one prompt chunk on its own Session;
    // every sequence that has a token to feed back joins one batched decode step.
    batch.clear();
    for (auto& r : running) {
      if (!r->alive) continue;
      try {
        if (!check(*r)) {
          r->alive = false;
        } else if (r->prefilled < static_cast<int64_t>(r->seq->params_.prompt.size())) {
          r->alive = prefill(*r);
        } else if (r->session->length() >= r->session->n_ctx()) {
          // Cannot happen (max_tokens is clamped so the last new token is never fed back); a
          // clear end for this sequence alone rather than a refused batch for everyone.
          fail("the sequence's context of {} tokens is full", r->session->n_ctx());
        } else {
          batch.push_back(r.get());
        }
      } catch (const std::exception& e) {
        log_warn("serve: a sequence failed: {}", e.what());
        r->seq->publish("", true, "", e.what());
        r->alive = false;
      }
    }
    if (!batch.empty()) {
      batch_sessions.clear();
      batch_tokens.clear();
      for (Running* r : batch) {
        batch_sessions.push_back(r->session.get());
        batch_tokens.push_back(r->last);
      }
      const float* logits = nullptr;
      try {
        logits = decoder.step(batch_sessions.data(), batch_tokens.data(), static_cast<int64_t>(batch.size()));
      } catch (const std::exception& e) {  // checked above; a failure here ends the whole batch
        log_warn("serve: a batched decode step of {} sequences failed: {}", batch.size(), e.what());
        for (Running* r : batch) {
          r->seq->publish("", true, "", e.what());
          r->alive = false;
        }
      }
      if (logits != nullptr) {
        const int64_t n = static_cast<int64_t>(batch.size());
        ++decode_steps_;
        decode_rows_ += n;
        if (n > decode_batch_max_.load()) decode_batch_max_ = n;  // written by this thread only
        const int64_t V = model_->config().n_vocab;
        for (size_t b = 0; b < batch.size(); ++b) {
          try {
            batch[b]->alive = emit(*batch[b], logits + static_cast<int64_t>(b) * V);
          } catch (const std::exception& e) {
            log_warn("serve: a sequence failed: {}", e.what());
            batch[b]->seq->publish("", true, "", e.what());
            batch[b]->alive = false;
          }
        }
      }
    }
    for (auto it = running.begin(); it != running.end();) {
      if ((*it)->alive) {
        ++it;
        continue;
      }
      allocated_ -= (*it)->allocated;
      {
        std::lock_guard<std::mutex> lk(mutex_);
        release(*(*it)->seq);
      }
      it = running.erase(it);  // frees the Session's caches
    }
  }
  // Shutting down: end every sequence, running, admitted or queued.
  for (auto& r : running) {
    r->seq->publish("", true, "", "the server is shutting down");
    allocated_ -= r->allocated;
  }
  running.clear();
  std::lock_guard<std::mutex> lk(mutex_);
  for (auto& s : admitted_) s->publish("", true, "", "the server is shutting down");
  for (auto& s : queue_) s->state_ = Sequence::State::kRefused;
  queue_.clear();
  admit_cv_.notify_all();
}

}  // namespace rad::serve
