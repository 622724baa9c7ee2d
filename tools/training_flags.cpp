#include "training_flags.h"

#include <string>

#include "rad/core/error.h"
#include "rad/core/log.h"
#include "rad/core/torch_setup.h"

namespace rad::cli {

void add_training_loop_flags(CLI::App* cmd, TrainingLoopOptions& o, std::initializer_list<std::string_view> names) {
  for (std::string_view name : names) {
    const std::string n(name);
    if (name == "--batch") {
      cmd->add_option(n, o.batch, "Sequences per step")->capture_default_str();
    } else if (name == "--seq") {
      cmd->add_option(n, o.seq, "Tokens per sequence")->capture_default_str();
    } else if (name == "--clip") {
      cmd->add_option(n, o.clip, "Gradient-norm clipping")->capture_default_str();
    } else if (name == "--bf16") {
      cmd->add_flag(n, o.bf16, "bf16 autocast for forward/backward (weights and optimizer stay float32)");
    } else if (name == "--save-every") {
      cmd->add_option(n, o.save_every, "Checkpoint every N steps")->capture_default_str();
    } else if (name == "--log-every") {
      cmd->add_option(n, o.log_every, "Metrics line every N steps")->capture_default_str();
    } else if (name == "--eval-every") {
      cmd->add_option(n, o.eval_every, "Probe accuracy and held-out perplexity every N steps")->capture_default_str();
    } else if (name == "--probe-pairs") {
      cmd->add_option(n, o.probe_pairs, "KV probe size for the periodic evaluation")->capture_default_str();
    } else if (name == "--probe-examples") {
      cmd->add_option(n, o.probe_examples, "KV probe examples for the periodic evaluation")->capture_default_str();
    } else if (name == "--min-pairs") {
      cmd->add_option(n, o.mix.min_pairs, "Smallest dictionary in training tasks")->capture_default_str();
    } else if (name == "--max-pairs") {
      cmd->add_option(n, o.mix.max_pairs, "Largest dictionary in training tasks")->capture_default_str();
    } else if (name == "--queries") {
      cmd->add_option(n, o.mix.queries, "Queries per dictionary (mqar)")->capture_default_str();
    } else if (name == "--resume") {
      cmd->add_flag(n, o.resume, "Continue the run in --out from its latest checkpoint");
    } else if (name == "--stop-after") {
      cmd->add_option(n, o.stop_after, "Stop (with a checkpoint) after this many steps; resume later");
    } else {
      fail("add_training_loop_flags: no shared training flag {}", n);
    }
  }
}

void warn_if_bf16_is_slow(const TrainingLoopOptions& o) {
  if (o.bf16 && !cpu_has_native_bf16())
    log_warn("--bf16 on a CPU without native bf16 matmuls (no avx512_bf16/amx_bf16): libtorch's fallback is much "
             "slower than float32 here (a distillation step measured 19x slower); consider dropping --bf16");
}

}  // namespace rad::cli
