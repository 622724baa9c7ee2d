// Configuration of a Transformer-SSM hybrid student: the teacher's ModelConfig, the head plan (which
// query heads stay softmax attention) and the SSM options for all other heads (docs/DESIGN.md section 4).
//
// config.json of a hybrid directory = the teacher's HF fields, with
//   "model_type": "radistill_hybrid", "architectures": ["RadistillHybridForCausalLM"],
//   "teacher_model_type" / "teacher_architecture": the teacher's originals,
//   "head_plan": the plan (rad/heads/head_plan.h format),
//   "ssm": {"d_state", "conv", "conv_width", "gate", "bias", "input_step", "chunk_size", "init"}.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "rad/heads/head_plan.h"
#include "rad/model/config.h"

namespace rad {

inline constexpr const char* kHybridModelType = "radistill_hybrid";
inline constexpr const char* kHybridArchitecture = "RadistillHybridForCausalLM";

struct SsmOptions {
  int64_t d_state = 0;      // N; 0 in a fresh struct means "d_head" (resolved by HybridConfig)
  bool conv = false;        // depthwise causal conv over [x, B, C] (identity init, no activation)
  int64_t conv_width = 4;
  bool gate = false;        // y *= silu(z_proj(u))
  bool bias = false;        // biases on x/B/C projections
  // The input step in the forward pass: H_t = alpha_t H_{t-1} + (1 - alpha_t) x_t B_t^T, so the
  // state is an exponential moving average (the size of one value, like the softmax head it
  // replaces) whatever alpha training moves to; the D skip uses the unscaled x_t. Without it the
  // attention init folds 1 - alpha into C instead (distill/init_from_attention.h).
  bool input_step = false;
  int64_t chunk_size = 64;  // SSD chunk length in training / prefill
  std::string init = "attention";  // how convert initialised the SSM heads (informational)
};

struct HybridConfig {
  ModelConfig base;  // the teacher's config (architecture/model_type are the teacher's)
  HeadPlan plan;
  SsmOptions ssm;

  // Validates d_state, conv width and chunk size.
  void validate(const std::string& where) const;
  nlohmann::json to_json() const;  // the full config.json
  static HybridConfig from_json(const nlohmann::json& j, const std::string& where);
  static bool is_hybrid_json(const nlohmann::json& j);

  // Analytic cache sizes (docs/DESIGN.md section 7) at `dtype_bytes` per KV element; SSM states are float32.
  int64_t kv_bytes_per_token(int64_t dtype_bytes) const;
  // Per sequence, fixed (states + conv states), at `dtype_bytes` per element (the runtime holds
  // them in float32: 4; the analytic figures count them at the deployed dtype, like the KV cache).
  int64_t ssm_state_bytes(int64_t dtype_bytes = 4) const;
  int64_t n_ssm_heads() const { return base.n_query_heads_total() - plan.size(); }
};

// The SSM options `convert`, `bank` and `run` start from (a fresh SsmOptions is the plain head: no
// conv, gate, bias or input step). Chosen by measurement on the default teacher (bench/RESULTS.md,
// "Student parity"): the width-4 causal conv on x/B/C as in the authors' mixer; the input step, the
// gate and the biases off (no measured gain at this scale).
SsmOptions recommended_ssm_options();

// The SSM state size: `requested` when > 0, else the teacher's head dim (so the attention init
// can copy whole Q/K rows into C/B; docs/DESIGN.md section 4).
int64_t resolve_d_state(const ModelConfig& teacher, int64_t requested);

// The shrunk state size: d_state / factor, at least 1 (paper: 64 -> 8).
int64_t shrunk_d_state(int64_t d_state, int64_t factor);

}  // namespace rad
