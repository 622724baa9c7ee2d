// The flags of a hybrid's SSM heads (rad/model/hybrid_config.h: SsmOptions) and of their decay init
// (rad/distill/init_from_attention.h: DecayInit), declared once for `convert` and `bank`, bound to
// the structs so each default lives in its struct.
#pragma once

#include <CLI/CLI.hpp>

#include "rad/distill/init_from_attention.h"
#include "rad/model/hybrid_config.h"

namespace rad::cli {

// --d-state --conv/--no-conv --conv-width --gate/--no-gate --bias/--no-bias --input-step/--no-input-step
// --chunk-size --dt-min --dt-max.
void add_ssm_flags(CLI::App* cmd, SsmOptions& ssm, DecayInit& decay);

// The same settings as `convert`/`bank` arguments (what `run` passes to its stages).
std::vector<std::string> ssm_flag_args(const SsmOptions& ssm, const DecayInit& decay);

}  // namespace rad::cli
