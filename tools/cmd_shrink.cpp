#include "commands.h"
#include "rad/core/error.h"
#include "rad/core/log.h"
#include "rad/distill/shrink.h"
#include "rad/io/hybrid_checkpoint.h"

namespace rad::cli {

void register_shrink(CLI::App& app) {
  auto* cmd = app.add_subcommand("shrink", "Initialise a smaller-state hybrid from a distilled one (then run a short distill)");
  static std::string model_dir, out, rule = "svd";
  static int64_t d_state = 0;
  cmd->add_option("--model", model_dir, "Distilled hybrid directory")->required();
  cmd->add_option("--d-state", d_state, "New SSM state dimension")->required();
  cmd->add_option("--rule", rule, "svd (best rank-N approximation of each head's C.B form) or truncate; "
                                   "truncate is used whenever the conv is on")->capture_default_str();
  cmd->add_option("--out", out, "Output hybrid directory")->required();
  cmd->callback([] {
    RAD_CHECK(io::is_hybrid_dir(model_dir), "{}: not a hybrid (config.json model_type is not radistill_hybrid)", model_dir);
    io::HybridModel src = io::load_hybrid(model_dir, at::kFloat);
    io::HybridModel small = shrink_state(src, d_state, rule);
    small.config.ssm.init = "shrink-" + std::string(src.config.ssm.conv ? "truncate" : rule) + " from d_state " +
                            std::to_string(src.config.ssm.d_state);
    io::save_hybrid(small.model, small.config, out);
    io::copy_tokenizer_files(model_dir, out);
    log_info("d_state {} -> {} ({}); SSM state per sequence {} -> {} bytes; wrote {}", src.config.ssm.d_state, d_state,
             src.config.ssm.conv ? "truncate" : rule, src.config.ssm_state_bytes(), small.config.ssm_state_bytes(), out);
  });
}

}  // namespace rad::cli
