// Learning-rate schedules: linear warm-up, then cosine decay or warmup-stable-decay (WSD: hold
// the peak, then decay linearly over the last `decay_fraction` of training).
#pragma once

#include <cstdint>
#include <string>

namespace rad {

struct LrSchedule {
  std::string kind = "wsd";   // "wsd" or "cosine"
  double peak = 1e-3;
  int64_t warmup = 100;
  int64_t total = 1000;
  double min_ratio = 0.1;     // final lr = peak * min_ratio
  double decay_fraction = 0.2;  // wsd only

  void validate() const;
  double at(int64_t step) const;  // step counts from 0
};

}  // namespace rad
