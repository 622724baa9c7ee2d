#include "rad/serve/metrics.h"

#include <fmt/format.h>

#include <type_traits>

namespace rad::serve {

void Metrics::count_request(const std::string& path, int status) {
  // Known endpoints only, so that a flood of random paths cannot grow the label set.
  static const char* known[] = {"/v1/completions", "/v1/chat/completions", "/v1/models", "/health", "/metrics"};
  std::string label = "other";
  for (const char* k : known)
    if (path == k) label = k;
  std::lock_guard<std::mutex> lk(m_);
  ++requests_[{label, status}];
}

std::string Metrics::render(const SchedulerStats& s) const {
  std::string out;
  auto metric = [&](const char* name, const char* type, const char* help) {
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
  };
  metric("radistill_requests_total", "counter", "HTTP requests answered, by endpoint and status code");
  {
    std::lock_guard<std::mutex> lk(m_);
    for (const auto& [key, n] : requests_)
      out += fmt::format("radistill_requests_total{{path=\"{}\",status=\"{}\"}} {}\n", key.first, key.second, n);
  }
  // One sample per metric: the HELP/TYPE lines, then the value (integers as is, rates with 3 decimals).
  auto sample = [&](const char* name, const char* type, const char* help, auto value) {
    metric(name, type, help);
    if constexpr (std::is_floating_point_v<decltype(value)>)
      out += fmt::format("{} {:.3f}\n", name, value);
    else
      out += fmt::format("{} {}\n", name, value);
  };
  sample("radistill_tokens_generated_total", "counter", "New tokens sampled", s.tokens_generated);
  sample("radistill_prompt_tokens_total", "counter", "Prompt tokens prefilled", s.prompt_tokens);
  sample("radistill_tokens_per_second", "gauge", "New tokens per second over the last 10 s, all sessions together", s.tokens_per_s);
  sample("radistill_cache_bytes_reserved", "gauge", "Cache bytes reserved by admitted sessions", s.reserved_bytes);
  sample("radistill_cache_bytes_allocated", "gauge", "Cache bytes (K/V + SSM state) the running sessions hold", s.allocated_bytes);
  sample("radistill_cache_budget_bytes", "gauge", "The --cache-budget", s.cache_budget);
  sample("radistill_active_sessions", "gauge", "Sessions admitted (running)", s.active);
  sample("radistill_max_sessions", "gauge", "The --max-sessions", s.max_sessions);
  sample("radistill_queue_length", "gauge", "Requests waiting for admission", s.queued);
  sample("radistill_rejected_total", "counter", "Requests refused with 503 (queue full or wait too long)", s.rejected);
  sample("radistill_cancelled_total", "counter", "Sequences dropped because the client disconnected", s.cancelled);
  sample("radistill_decode_steps_total", "counter", "Batched decode steps (one pass over the weights for all decoding sessions)", s.decode_steps);
  sample("radistill_decode_rows_total", "counter", "Tokens decoded in batched steps (divided by the steps: the mean batch size)", s.decode_rows);
  sample("radistill_decode_batch_max", "gauge", "The most sessions decoded in one batched step", s.decode_batch_max);
  return out;
}

}  // namespace rad::serve
