#include "ssm_flags.h"

#include <fmt/format.h>

namespace rad::cli {

void add_ssm_flags(CLI::App* cmd, SsmOptions& s, DecayInit& d) {
  cmd->add_option("--d-state", s.d_state, "SSM state size N (default: d_head); the attention init needs N <= d_head")
      ->check(CLI::NonNegativeNumber);
  cmd->add_flag("--conv,!--no-conv", s.conv, "Depthwise causal conv over [x, B, C] (identity init)")->capture_default_str();
  cmd->add_option("--conv-width", s.conv_width, "Conv width")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_flag("--gate,!--no-gate", s.gate, "Output gate silu(z) (identity init)")->capture_default_str();
  cmd->add_flag("--bias,!--no-bias", s.bias, "Biases on the x/B/C projections")->capture_default_str();
  cmd->add_flag("--input-step,!--no-input-step", s.input_step,
                "The input step (1 - alpha_t) on x_t in the forward pass (the state is a moving average); without "
                "it the init folds 1 - alpha into C")
      ->capture_default_str();
  cmd->add_option("--chunk-size", s.chunk_size, "SSD chunk length for training / prefill")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--dt-min", d.dt_min, "Decay init: smallest step dt = -log(alpha) (longest memory)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--dt-max", d.dt_max, "Decay init: largest step dt = -log(alpha) (shortest memory); a layer's "
                  "heads are log-spaced over [dt-min, dt-max] by head index")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
}

std::vector<std::string> ssm_flag_args(const SsmOptions& s, const DecayInit& d) {
  std::vector<std::string> a;
  if (s.d_state > 0) a.insert(a.end(), {"--d-state", std::to_string(s.d_state)});
  a.push_back(s.conv ? "--conv" : "--no-conv");
  a.insert(a.end(), {"--conv-width", std::to_string(s.conv_width)});
  a.push_back(s.gate ? "--gate" : "--no-gate");
  a.push_back(s.bias ? "--bias" : "--no-bias");
  a.push_back(s.input_step ? "--input-step" : "--no-input-step");
  a.insert(a.end(), {"--chunk-size", std::to_string(s.chunk_size), "--dt-min", fmt::format("{}", d.dt_min), "--dt-max",
                     fmt::format("{}", d.dt_max)});
  return a;
}

}  // namespace rad::cli
