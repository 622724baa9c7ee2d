#include <fmt/format.h>

#include <filesystem>

#include "commands.h"
#include "rad/core/atomic_file.h"
#include "rad/core/error.h"
#include "rad/core/log.h"
#include "rad/distill/init_from_attention.h"
#include "rad/heads/head_plan.h"
#include "rad/io/checkpoint.h"
#include "rad/io/hybrid_checkpoint.h"

namespace rad::cli {

namespace {

// README.md of the hybrid directory: what it is and how its SSM heads were initialised.
void write_card(const std::string& out_dir, const std::string& teacher_dir, const HybridConfig& hc) {
  const ModelConfig& c = hc.base;
  std::string s = fmt::format("# Transformer-SSM hybrid (radistill)\n\nConverted from `{}` ({}) by `radistill convert`.\n\n",
                              teacher_dir, c.architecture);
  s += fmt::format("- {} of {} query heads stay softmax attention (the teacher's heads, RoPE, GQA with one shared K/V "
                   "per kept KV group); the other {} are discrete Mamba-2 (SSD) heads.\n",
                   hc.plan.size(), c.n_query_heads_total(), hc.n_ssm_heads());
  s += fmt::format("- SSM: head dim P = d_head = {}, state N = d_state = {}, conv {}, gate {}, bias {}, chunk {}.\n",
                   c.d_head, hc.ssm.d_state, hc.ssm.conv ? "on" : "off", hc.ssm.gate ? "on" : "off",
                   hc.ssm.bias ? "on" : "off", hc.ssm.chunk_size);
  if (hc.ssm.init == "attention") {
    s += "- SSM init from attention: x <- the head's KV group's V rows, B <- the group's K rows, C <- the head's Q rows "
         "scaled by 1/sqrt(d_head), D = 0.\n";
    if (hc.ssm.d_state < c.d_head)
      s += fmt::format("- d_state {} < d_head {}: B and C keep the {} lowest-frequency rotary dims of each head's K "
                       "and Q rows ({}): SSM heads have no RoPE, and an un-rotated q.k matches the rotated score "
                       "best where the rotation is slowest.\n", hc.ssm.d_state, c.d_head, hc.ssm.d_state,
                       nlohmann::json(ssm_state_dims(c.d_head, hc.ssm.d_state)).dump());
  } else {
    s += "- SSM init: random (x/B/C ~ N(0, 1/d_model), D = 1).\n";
  }
  s += "- Decay alpha_t = exp(-softplus(w_a.u_t + b_a)): w_a = 0, softplus(b_a) log-spaced over [1e-3, 1e-1] per layer "
       "(long memory: time constants 10 to 1000 tokens).\n";
  s += "- Not distilled yet: expect teacher-level quality only after distillation.\n";
  write_text_atomic((std::filesystem::path(out_dir) / "README.md").string(), s);
}

}  // namespace

void register_convert(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "convert",
      "Build a Transformer-SSM hybrid from a teacher and a head plan: kept heads stay softmax attention, all other "
      "heads become Mamba-2 (SSD) heads initialised from their attention weights");
  static std::string teacher_dir, plan_path, out_dir, init = "attention";
  static int64_t d_state = 0, conv_width = 4, chunk = 64;
  static uint64_t seed = 0;
  static bool conv = false, gate = false, bias = false;
  cmd->add_option("TEACHER", teacher_dir, "Teacher model directory (Hugging Face format)")->required();
  cmd->add_option("--plan", plan_path, "Head plan JSON (from `radistill heads`, or hand-written {\"kept_heads\": [[l, h], ...]})")
      ->required();
  cmd->add_option("--out", out_dir, "Output directory for the hybrid")->required();
  cmd->add_option("--d-state", d_state, "SSM state size N (default: d_head); the attention init needs N <= d_head")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--ssm-init", init, "attention (copy V->x, K->B, Q->C) or random")
      ->capture_default_str()
      ->check(CLI::IsMember({"attention", "random"}));
  cmd->add_flag("--conv", conv, "Depthwise causal conv over [x, B, C] (identity init)");
  cmd->add_option("--conv-width", conv_width, "Conv width")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_flag("--gate", gate, "Output gate silu(z) (identity init)");
  cmd->add_flag("--bias", bias, "Biases on the x/B/C projections");
  cmd->add_option("--chunk-size", chunk, "SSD chunk length for training / prefill")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--seed", seed, "Seed for --ssm-init random")->capture_default_str();
  cmd->callback([] {
    RAD_CHECK(!io::is_hybrid_dir(teacher_dir), "{}: is already a hybrid; convert needs a teacher (Transformer) directory",
              teacher_dir);
    CausalLM teacher = io::load_causal_lm(teacher_dir, at::kFloat);
    HybridConfig hc;
    hc.base = teacher->config();
    hc.plan = HeadPlan::load(plan_path, hc.base);
    hc.ssm.d_state = resolve_d_state(hc.base, d_state);
    hc.ssm.conv = conv;
    hc.ssm.conv_width = conv_width;
    hc.ssm.gate = gate;
    hc.ssm.bias = bias;
    hc.ssm.chunk_size = chunk;
    hc.ssm.init = init;
    hc.validate("convert");
    CausalLM hybrid = convert_from_teacher(teacher, hc, parse_ssm_init(init), seed);
    hybrid->to(teacher->dtype());
    // Store in the teacher's dtype on disk.
    at::ScalarType disk = io::parse_dtype(hc.base.torch_dtype);
    hybrid->to(disk == at::kHalf ? at::kFloat : disk);
    io::save_hybrid(hybrid, hc, out_dir);
    io::copy_tokenizer_files(teacher_dir, out_dir);
    write_card(out_dir, teacher_dir, hc);
    log_info("wrote {}: {} kept heads, {} SSM heads (d_state {}), {} parameters", out_dir, hc.plan.size(),
             hc.n_ssm_heads(), hc.ssm.d_state, hybrid->parameter_count());
  });
}

}  // namespace rad::cli
