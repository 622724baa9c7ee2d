// Prometheus text exposition (format 0.0.4) of the server: requests by endpoint and status, tokens,
// tokens/s, cache bytes, sessions and the admission queue.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <utility>

#include "rad/serve/scheduler.h"

namespace rad::serve {

class Metrics {
 public:
  void count_request(const std::string& path, int status);
  std::string render(const SchedulerStats& s) const;

 private:
  mutable std::mutex m_;
  std::map<std::pair<std::string, int>, int64_t> requests_;
};

}  // namespace rad::serve
