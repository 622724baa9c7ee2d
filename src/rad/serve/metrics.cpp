#include "rad/serve/metrics.h"

#include <fmt/format.h>

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
  metric("radistill_tokens_generated_total", "counter", "New tokens sampled");
  out += fmt::format("radistill_tokens_generated_total {}\n", s.tokens_generated);
  metric("radistill_prompt_tokens_total", "counter", "Prompt tokens prefilled");
  out += fmt::format("radistill_prompt_tokens_total {}\n", s.prompt_tokens);
  metric("radistill_tokens_per_second", "gauge", "New tokens per second over the last 10 s, all sessions together");
  out += fmt::format("radistill_tokens_per_second {:.3f}\n", s.tokens_per_s);
  metric("radistill_cache_bytes_reserved", "gauge", "Cache bytes reserved by admitted sessions");
  out += fmt::format("radistill_cache_bytes_reserved {}\n", s.reserved_bytes);
  metric("radistill_cache_bytes_allocated", "gauge", "Cache bytes (K/V + SSM state) the running sessions hold");
  out += fmt::format("radistill_cache_bytes_allocated {}\n", s.allocated_bytes);
  metric("radistill_cache_budget_bytes", "gauge", "The --cache-budget");
  out += fmt::format("radistill_cache_budget_bytes {}\n", s.cache_budget);
  metric("radistill_active_sessions", "gauge", "Sessions admitted (running)");
  out += fmt::format("radistill_active_sessions {}\n", s.active);
  metric("radistill_max_sessions", "gauge", "The --max-sessions");
  out += fmt::format("radistill_max_sessions {}\n", s.max_sessions);
  metric("radistill_queue_length", "gauge", "Requests waiting for admission");
  out += fmt::format("radistill_queue_length {}\n", s.queued);
  metric("radistill_rejected_total", "counter", "Requests refused with 503 (queue full or wait too long)");
  out += fmt::format("radistill_rejected_total {}\n", s.rejected);
  metric("radistill_cancelled_total", "counter", "Sequences dropped because the client disconnected");
  out += fmt::format("radistill_cancelled_total {}\n", s.cancelled);
  return out;
}

}  // namespace rad::serve
