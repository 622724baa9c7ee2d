#include "rad/core/progress.h"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>

namespace rad {

std::string format_duration(double s) {
  if (!(s >= 0) || s > 1e8) return "?";
  int64_t t = static_cast<int64_t>(s + 0.5);
  if (t >= 3600) return fmt::format("{}h{:02d}m", t / 3600, (t % 3600) / 60);
  if (t >= 60) return fmt::format("{}m{:02d}s", t / 60, t % 60);
  return fmt::format("{}s", t);
}

Progress::Progress(std::string label, int64_t total, std::string unit, int64_t done)
    : label_(std::move(label)), unit_(std::move(unit)), total_(std::max<int64_t>(total, 1)), done_(done),
      start_done_(done), tty_(::isatty(STDERR_FILENO) != 0), start_(std::chrono::steady_clock::now()),
      last_draw_(start_ - std::chrono::hours(1)) {}

Progress::~Progress() {
  if (!finished_ && tty_) std::fprintf(stderr, "\n");
}

void Progress::update(int64_t done, const std::string& status) {
  done_ = done;
  status_ = status;
  auto now = std::chrono::steady_clock::now();
  double since = std::chrono::duration<double>(now - last_draw_).count();
  if (since >= (tty_ ? 0.2 : 10.0)) {
    last_draw_ = now;
    draw(false);
  }
}

void Progress::finish(const std::string& status) {
  if (!status.empty()) status_ = status;
  draw(true);
  finished_ = true;
}

void Progress::draw(bool final) {
  double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  double rate = elapsed > 0 ? (done_ - start_done_) / elapsed : 0;
  double eta = rate > 0 ? (total_ - done_) / rate : -1;
  double frac = std::min(1.0, static_cast<double>(done_) / total_);
  std::string line;
  if (tty_) {
    const int width = 24;
    int filled = static_cast<int>(frac * width);
    line = fmt::format("\r{} [{}{}] {}/{} {} {:.2f} {}/s ETA {}", label_, std::string(filled, '#'),
                       std::string(width - filled, '.'), done_, total_, unit_, rate, unit_,
                       final ? format_duration(elapsed) + " total" : format_duration(eta));
    if (!status_.empty()) line += " | " + status_;
    line += "\x1b[K";
    if (final) line += "\n";
  } else {
    line = fmt::format("{}: {}/{} {} ({:.0f}%), {:.2f} {}/s, {} {}{}\n", label_, done_, total_, unit_, 100 * frac,
                       rate, unit_, final ? "took" : "ETA", final ? format_duration(elapsed) : format_duration(eta),
                       status_.empty() ? "" : "| " + status_);
  }
  std::fputs(line.c_str(), stderr);
  std::fflush(stderr);
}

}  // namespace rad
