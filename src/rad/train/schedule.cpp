#include "rad/train/schedule.h"

#include <algorithm>
#include <cmath>

#include "rad/core/error.h"

namespace rad {

void LrSchedule::validate() const {
  RAD_CHECK(kind == "wsd" || kind == "cosine", "--schedule must be wsd or cosine, got \"{}\"", kind);
  RAD_CHECK(peak > 0 && std::isfinite(peak), "learning rate must be positive, got {}", peak);
  RAD_CHECK(total >= 1, "number of steps must be >= 1, got {}", total);
  RAD_CHECK(warmup >= 0, "warm-up steps must be >= 0, got {}", warmup);
  RAD_CHECK(min_ratio >= 0 && min_ratio <= 1, "min lr ratio must be in [0, 1], got {}", min_ratio);
  RAD_CHECK(decay_fraction > 0 && decay_fraction <= 1, "decay fraction must be in (0, 1], got {}", decay_fraction);
}

// The last step (total - 1) runs at the floor; decay progress counts the step being taken.
double LrSchedule::at(int64_t step) const {
  if (warmup > 0 && step < warmup) return peak * static_cast<double>(step + 1) / warmup;
  double floor = peak * min_ratio;
  if (kind == "cosine") {
    double span = std::max<int64_t>(1, total - warmup);
    double t = std::clamp((step + 1 - warmup) / span, 0.0, 1.0);
    return floor + (peak - floor) * 0.5 * (1 + std::cos(M_PI * t));
  }
  int64_t decay_steps = std::max<int64_t>(1, static_cast<int64_t>(decay_fraction * total));
  int64_t decay_start = std::max(warmup, total - decay_steps);
  if (step < decay_start) return peak;
  double t = std::clamp(static_cast<double>(step + 1 - decay_start) / std::max<int64_t>(1, total - decay_start), 0.0, 1.0);
  return peak + (floor - peak) * t;
}

}  // namespace rad
