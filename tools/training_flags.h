// The flags of the options every training loop shares (rad/train/loop.h: TrainingLoopOptions),
// declared once for `radistill pretrain` and `radistill distill`, so their wording and defaults
// cannot drift apart. Flags whose meaning differs between the two (--weight-decay, --seed,
// --task-share, --answer-weight) stay declared in each command.
#pragma once

#include <CLI/CLI.hpp>

#include <initializer_list>
#include <string_view>

#include "rad/train/loop.h"

namespace rad::cli {

// Adds the named flags (e.g. {"--batch", "--seq"}), bound to `o`, in the order given: each command
// keeps its own order of options in --help. The names: --batch --seq --clip --bf16 --save-every
// --log-every --eval-every --probe-pairs --probe-examples --min-pairs --max-pairs --queries --resume
// --stop-after. Defaults shown are those in `o` at the call.
void add_training_loop_flags(CLI::App* cmd, TrainingLoopOptions& o, std::initializer_list<std::string_view> names);

// Warns when --bf16 was asked for on a CPU whose libtorch bf16 fallback is much slower than float32.
void warn_if_bf16_is_slow(const TrainingLoopOptions& o);

}  // namespace rad::cli
