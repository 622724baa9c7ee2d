// Progress display for long work: a one-line bar with rate and ETA when stderr is a terminal,
// plain lines every few seconds otherwise (logs, CI).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace rad {

class Progress {
 public:
  // `total` units of work named `unit` (e.g. "steps"); `done` may start above zero on resume.
  Progress(std::string label, int64_t total, std::string unit, int64_t done = 0);
  ~Progress();
  // Sets the work done so far and an optional status text (e.g. "loss 2.31 | 5400 tok/s").
  void update(int64_t done, const std::string& status = "");
  // Prints the final line.
  void finish(const std::string& status = "");

 private:
  void draw(bool final);
  std::string label_, unit_, status_;
  int64_t total_, done_, start_done_;
  bool tty_, finished_ = false;
  std::chrono::steady_clock::time_point start_, last_draw_;
};

// "1h02m", "3m05s", "12s".
std::string format_duration(double seconds);

}  // namespace rad
