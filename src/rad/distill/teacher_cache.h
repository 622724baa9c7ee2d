// A disk cache of the teacher's final hidden states, keyed by the input rows, for knowledge
// distillation. Every student of a `radistill run` (the selection's proxies, the budget trials, the
// hybrid and its baselines) is distilled on the same rows, so the teacher's forward through its
// layers (about a fifth of a KD step on the default teacher, bench/bench_distill_step.cpp) is done
// once per batch instead of once per student. Only the LM head is recomputed: the logits
// (batch x seq x vocab, 32 MiB per default batch) would be 30x larger than the hidden states.
//
// Layout: DIR/teacher.json ({"teacher_model_hash": ...}; a cache of another teacher is refused) and
// DIR/<fnv1a64 of the input ids>-<rows>x<seq>.npy, float32 [rows, seq, d_model], written atomically.
// The logits equal teacher->forward(input) exactly (the same final_logits on the same hidden).
#pragma once

#include <ATen/ATen.h>

#include <string>

#include "rad/model/causal_lm.h"

namespace rad {

class TeacherHiddenCache {
 public:
  // An empty `dir`: no cache (logits() is teacher->forward). Otherwise creates DIR (and teacher.json)
  // when missing, or checks that it holds this teacher's states. Data-parallel ranks each read and
  // write the files of their own rows.
  TeacherHiddenCache(const std::string& dir, CausalLM& teacher);

  bool enabled() const { return !dir_.empty(); }
  // The teacher's logits for `input` [rows, seq] (no gradient), from the cache when it has them.
  at::Tensor logits(CausalLM& teacher, const at::Tensor& input);

  int64_t hits() const { return hits_; }
  int64_t misses() const { return misses_; }

 private:
  std::string dir_;
  int64_t hits_ = 0, misses_ = 0;
};

// "fnv1a64:<16 hex digits>" of a tensor's shape, dtype and bytes (contiguous CPU copy).
std::string tensor_content_hash(const at::Tensor& t);

}  // namespace rad
