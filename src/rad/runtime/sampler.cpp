#include "rad/runtime/sampler.h"

#include <algorithm>
#include <chrono>
#include <cmath>

#include "rad/core/error.h"
#include "rad/runtime/engine.h"

namespace rad::runtime {

void SamplingOptions::validate() const {
  RAD_CHECK(std::isfinite(temperature) && temperature >= 0, "sampling: temperature must be >= 0, got {}", temperature);
  RAD_CHECK(top_k >= 0, "sampling: top-k must be >= 0, got {}", top_k);
  RAD_CHECK(top_p > 0 && top_p <= 1, "sampling: top-p must be in (0, 1], got {}", top_p);
  RAD_CHECK(std::isfinite(repetition_penalty) && repetition_penalty > 0,
            "sampling: repetition penalty must be > 0, got {}", repetition_penalty);
  RAD_CHECK(repeat_last_n >= 0, "sampling: repeat-last-n must be >= 0, got {}", repeat_last_n);
}

Sampler::Sampler(const SamplingOptions& o, int64_t n_vocab) : o_(o), n_vocab_(n_vocab), rng_(o.seed) {
  o_.validate();
  cand_.reserve(static_cast<size_t>(n_vocab));
  seen_.assign(static_cast<size_t>(n_vocab), 0);
}

int64_t Sampler::sample(float* logits, const std::vector<int64_t>& history) {
  if (o_.repetition_penalty != 1.0f && o_.repeat_last_n > 0) {
    // CTRL-style penalty (as HF and llama.cpp): each distinct recent token once.
    const size_t from = history.size() > static_cast<size_t>(o_.repeat_last_n) ? history.size() - o_.repeat_last_n : 0;
    for (size_t i = from; i < history.size(); ++i) {
      const int64_t t = history[i];
      if (t < 0 || t >= n_vocab_ || seen_[t]) continue;
      seen_[t] = 1;
      logits[t] = logits[t] > 0 ? logits[t] / o_.repetition_penalty : logits[t] * o_.repetition_penalty;
    }
    for (size_t i = from; i < history.size(); ++i)
      if (history[i] >= 0 && history[i] < n_vocab_) seen_[history[i]] = 0;
  }
  if (o_.temperature <= 0) return std::max_element(logits, logits + n_vocab_) - logits;
  cand_.clear();
  for (int64_t i = 0; i < n_vocab_; ++i) cand_.emplace_back(logits[i], i);
  auto by_logit = [](const auto& a, const auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); };
  size_t k = o_.top_k > 0 ? std::min<size_t>(o_.top_k, cand_.size()) : cand_.size();
  std::partial_sort(cand_.begin(), cand_.begin() + k, cand_.end(), by_logit);
  cand_.resize(k);
  // Softmax at the temperature, in double.
  const double mx = cand_[0].first;
  double sum = 0;
  for (auto& c : cand_) {
    c.first = static_cast<float>(std::exp((c.first - mx) / o_.temperature));
    sum += c.first;
  }
  if (o_.top_p < 1.0f) {
    double cum = 0;
    size_t keep = cand_.size();
    for (size_t i = 0; i < cand_.size(); ++i) {
      cum += cand_[i].first / sum;
      if (cum >= o_.top_p) {
        keep = i + 1;
        break;
      }
    }
    cand_.resize(keep);
    sum = 0;
    for (const auto& c : cand_) sum += c.first;
  }
  double r = std::uniform_real_distribution<double>(0.0, sum)(rng_);
  for (const auto& c : cand_) {
    r -= c.first;
    if (r < 0) return c.second;
  }
  return cand_.back().second;
}

void log_softmax(const float* logits, int64_t n, float* out) {
  RAD_CHECK(n >= 1, "log_softmax: no values");
  float mx = logits[0];
  for (int64_t i = 1; i < n; ++i) mx = std::max(mx, logits[i]);
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += std::exp(static_cast<double>(logits[i]) - mx);
  const double lse = static_cast<double>(mx) + std::log(sum);
  for (int64_t i = 0; i < n; ++i) out[i] = static_cast<float>(static_cast<double>(logits[i]) - lse);
}

void top_k(const float* values, int64_t n, int64_t k, std::vector<std::pair<int64_t, float>>& out) {
  out.clear();
  k = std::min(std::max<int64_t>(k, 0), n);
  if (k == 0) return;
  // Insertion into a sorted list of at most k entries: k is small (the API allows 20).
  auto better = [](float a, int64_t ia, float b, int64_t ib) { return a > b || (a == b && ia < ib); };
  out.reserve(static_cast<size_t>(k));
  for (int64_t i = 0; i < n; ++i) {
    const float v = values[i];
    if (static_cast<int64_t>(out.size()) == k && !better(v, i, out.back().second, out.back().first)) continue;
    if (static_cast<int64_t>(out.size()) == k) out.pop_back();
    size_t at = out.size();
    while (at > 0 && better(v, i, out[at - 1].second, out[at - 1].first)) --at;
    out.insert(out.begin() + static_cast<std::ptrdiff_t>(at), {i, v});
  }
}

GenerateResult generate(Session& session, const std::vector<int64_t>& prompt, const GenerateOptions& options) {
  RAD_CHECK(!prompt.empty(), "generate: the prompt is empty");
  const int64_t V = session.model().config().n_vocab;
  Sampler sampler(options.sampling, V);
  std::vector<float> logits(static_cast<size_t>(V));
  std::vector<int64_t> history = prompt;
  history.reserve(prompt.size() + options.max_new_tokens);
  GenerateResult r;
  r.tokens.reserve(options.max_new_tokens);
  r.stop_reason = "length";
  auto clock = std::chrono::steady_clock::now;
  auto t0 = clock();
  const float* out = session.forward(prompt.data(), static_cast<int64_t>(prompt.size()));
  auto t1 = clock();
  for (int64_t i = 0; i < options.max_new_tokens; ++i) {
    std::copy(out, out + V, logits.begin());
    const int64_t next = sampler.sample(logits.data(), history);
    r.tokens.push_back(next);
    history.push_back(next);
    if (options.on_token) options.on_token(next);
    if (options.stop_at_eos &&
        std::find(options.eos_token_ids.begin(), options.eos_token_ids.end(), next) != options.eos_token_ids.end()) {
      r.stop_reason = "eos";
      break;
    }
    if (!options.stop_strings.empty() && options.decode) {
      const std::string text = options.decode(r.tokens);
      bool hit = false;
      for (const auto& s : options.stop_strings) hit = hit || (!s.empty() && text.find(s) != std::string::npos);
      if (hit) {
        r.stop_reason = "stop_string";
        break;
      }
    }
    if (i + 1 == options.max_new_tokens) break;
    out = session.step(next);
  }
  auto t2 = clock();
  r.cache_bytes = session.cache_bytes().used();
  r.prefill_seconds = std::chrono::duration<double>(t1 - t0).count();
  r.decode_seconds = std::chrono::duration<double>(t2 - t1).count();
  return r;
}

}  // namespace rad::runtime
