#include <fmt/format.h>

#include <filesystem>
#include <optional>

#include "commands.h"
#include "rad/core/atomic_file.h"
#include "rad/core/error.h"
#include "rad/core/log.h"
#include "rad/distill/head_bank.h"
#include "rad/distill/init_from_attention.h"
#include "rad/heads/head_plan.h"
#include "rad/heads/model_hash.h"
#include "rad/io/checkpoint.h"
#include "rad/io/hybrid_checkpoint.h"
#include "ssm_flags.h"

namespace rad::cli {

namespace {

// README.md of the hybrid directory: what it is and how its SSM heads were initialised.
void write_card(const std::string& out_dir, const std::string& teacher_dir, const HybridConfig& hc,
                const DecayInit& decay, const std::string& bank_dir) {
  const ModelConfig& c = hc.base;
  std::string s = fmt::format("# Transformer-SSM hybrid (radistill)\n\nConverted from `{}` ({}) by `radistill convert`.\n\n",
                              teacher_dir, c.architecture);
  s += fmt::format("- {} of {} query heads stay softmax attention (the teacher's heads, RoPE, GQA with one shared K/V "
                   "per kept KV group); the other {} are discrete Mamba-2 (SSD) heads.\n",
                   hc.plan.size(), c.n_query_heads_total(), hc.n_ssm_heads());
  s += fmt::format("- SSM: head dim P = d_head = {}, state N = d_state = {}, conv {}, gate {}, bias {}, input step {}, "
                   "chunk {}.\n",
                   c.d_head, hc.ssm.d_state, hc.ssm.conv ? "on" : "off", hc.ssm.gate ? "on" : "off",
                   hc.ssm.bias ? "on" : "off", hc.ssm.input_step ? "on" : "off", hc.ssm.chunk_size);
  if (!bank_dir.empty()) {
    s += fmt::format("- SSM heads from the head bank `{}`: each head's replacement aligned there, teacher-forced, "
                     "to that head's contribution (radistill bank).\n", bank_dir);
  } else if (hc.ssm.init == "attention") {
    s += fmt::format("- SSM init from attention: x <- the head's KV group's V rows, B <- the group's K rows, C <- the "
                     "head's Q rows scaled by 1/sqrt(d_head){}, D = 0.\n",
                     hc.ssm.input_step ? "" : " and by 1 - alpha (no input step in the forward pass)");
    if (hc.ssm.d_state < c.d_head)
      s += fmt::format("- d_state {} < d_head {}: B and C keep the {} lowest-frequency rotary dims of each head's K "
                       "and Q rows ({}): SSM heads have no RoPE, and an un-rotated q.k matches the rotated score "
                       "best where the rotation is slowest.\n", hc.ssm.d_state, c.d_head, hc.ssm.d_state,
                       nlohmann::json(ssm_state_dims(c.d_head, hc.ssm.d_state)).dump());
  } else {
    s += "- SSM init: random (x/B/C ~ N(0, 1/d_model), D = 1).\n";
  }
  if (bank_dir.empty())
    s += fmt::format("- Decay alpha_t = exp(-softplus(w_a.u_t + b_a)): w_a = 0, softplus(b_a) log-spaced over [{}, {}] "
                     "across each layer's heads by head index.\n", decay.dt_min, decay.dt_max);
  s += "- Not distilled yet: expect teacher-level quality only after distillation.\n";
  write_text_atomic((std::filesystem::path(out_dir) / "README.md").string(), s);
}

}  // namespace

void register_convert(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "convert",
      "Build a Transformer-SSM hybrid from a teacher and a head plan: kept heads stay softmax attention, all other "
      "heads become Mamba-2 (SSD) heads initialised from their attention weights");
  static std::string teacher_dir, plan_path, out_dir, bank_dir, init = "attention";
  static SsmOptions ssm = recommended_ssm_options();
  static DecayInit decay;
  static uint64_t seed = 0;
  cmd->add_option("TEACHER", teacher_dir, "Teacher model directory (Hugging Face format)")->required();
  cmd->add_option("--plan", plan_path, "Head plan JSON (from `radistill heads`, or hand-written {\"kept_heads\": [[l, h], ...]})")
      ->required();
  cmd->add_option("--out", out_dir, "Output directory for the hybrid")->required();
  cmd->add_option("--bank", bank_dir, "Take every SSM head from this head bank (`radistill bank` of the same teacher) "
                  "instead of initialising it; the SSM options are the bank's");
  cmd->add_option("--ssm-init", init, "attention (copy V->x, K->B, Q->C) or random")
      ->capture_default_str()
      ->check(CLI::IsMember({"attention", "random"}));
  add_ssm_flags(cmd, ssm, decay);
  cmd->add_option("--seed", seed, "Seed for --ssm-init random")->capture_default_str();
  cmd->callback([cmd] {
    RAD_CHECK(!io::is_hybrid_dir(teacher_dir), "{}: is already a hybrid; convert needs a teacher (Transformer) directory",
              teacher_dir);
    CausalLM teacher = io::load_causal_lm(teacher_dir, at::kFloat);
    HybridConfig hc;
    hc.base = teacher->config();
    hc.plan = HeadPlan::load(plan_path, hc.base);
    std::optional<io::HybridModel> bank;
    if (!bank_dir.empty()) {
      for (const char* flag : {"--d-state", "--conv", "--conv-width", "--gate", "--bias", "--input-step", "--dt-min",
                               "--dt-max", "--ssm-init"})
        RAD_CHECK(cmd->count(flag) == 0, "convert: {} with --bank: the SSM heads and their options are the bank's ({})",
                  flag, bank_dir);
      RAD_CHECK(io::is_hybrid_dir(bank_dir), "--bank {}: not a head bank (expected the --out of `radistill bank`)",
                bank_dir);
      bank = io::load_hybrid(bank_dir, at::kFloat);
      check_bank_matches(bank->config, hc.base, "--bank " + bank_dir);
      check_bank_teacher(bank_dir, model_hash(teacher));
      hc.ssm = bank->config.ssm;
    } else {
      hc.ssm = ssm;
      hc.ssm.d_state = resolve_d_state(hc.base, ssm.d_state);
      hc.ssm.init = init;
    }
    hc.validate("convert");
    CausalLM hybrid = convert_from_teacher(teacher, hc, bank ? SsmInit::kAttention : parse_ssm_init(init), seed, decay);
    if (bank) {
      assemble_from_bank(hybrid, bank->model);
      hc.ssm.init = "bank";
    }
    hybrid->to(teacher->dtype());
    // Store in the teacher's dtype on disk.
    at::ScalarType disk = io::parse_dtype(hc.base.torch_dtype);
    hybrid->to(disk == at::kHalf ? at::kFloat : disk);
    io::save_hybrid(hybrid, hc, out_dir);
    io::copy_tokenizer_files(teacher_dir, out_dir);
    write_card(out_dir, teacher_dir, hc, decay, bank_dir);
    log_info("wrote {}: {} kept heads, {} SSM heads (d_state {}{}), {} parameters", out_dir, hc.plan.size(),
             hc.n_ssm_heads(), hc.ssm.d_state, bank ? ", from the bank " + bank_dir : "", hybrid->parameter_count());
  });
}

}  // namespace rad::cli
