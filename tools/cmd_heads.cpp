#include <cmath>

#include "commands.h"
#include "rad/core/device.h"
#include "rad/core/error.h"
#include "rad/core/log.h"
#include "rad/heads/discovery.h"
#include "rad/io/checkpoint.h"
#include "rad/parallel/process_group.h"
#include "text_codec.h"

namespace rad::cli {

void register_heads(CLI::App& app) {
  auto* cmd = app.add_subcommand("heads", "Score every attention head by ablation on the KV probe (or --task); write a head plan");
  static std::string dir, out, dtype = "float32", weights_dtype = "auto";
  static DiscoveryOptions o;
  static int64_t pairs = 0;
  static double threshold = 0;
  cmd->add_option("MODEL_DIR", dir, "Teacher model directory (with tokenizer.json)")->required();
  cmd->add_option("--out", out, "Output directory for heads.json, plan.json, heads.svg, causal.svg, heads.md")->required();
  cmd->add_option("--task", o.task,
                  "Probe task: kv (the paper's), or another retrieval task for a model that cannot solve kv "
                  "(mqar, needle, phonebook, copy)")
      ->capture_default_str()
      ->check(CLI::IsMember({"kv", "mqar", "needle", "phonebook", "copy"}));
  cmd->add_option("--pairs", pairs, "Probe dictionary size (default: 50, or the largest the context allows)");
  cmd->add_option("--context-words", o.context_words, "Needle probe: filler words")->capture_default_str();
  cmd->add_option("--examples", o.examples, "Probe examples")->capture_default_str();
  cmd->add_option("--seed", o.seed, "Probe seed")->capture_default_str();
  cmd->add_option("--ablation", o.ablation, "zero or mean")->capture_default_str();
  cmd->add_option("--batch", o.batch, "Examples per forward pass")->capture_default_str();
  cmd->add_option("--random-draws", o.random_draws, "Random head sets per k in the causal check")->capture_default_str();
  cmd->add_option("--causal-examples", o.causal_examples,
                  "Examples of the causal check (other keys and examples than the selection probe)")->capture_default_str();
  auto* b = cmd->add_option("--budget", o.selector.budget, "Keep the top K heads");
  auto* f = cmd->add_option("--fraction", o.selector.fraction, "Keep the top fraction F of heads");
  auto* t = cmd->add_option("--threshold", threshold, "Keep heads whose score (answer log-prob drop, nats) is >= T");
  b->excludes(f)->excludes(t);
  f->excludes(t);
  cmd->add_option("--dtype", dtype, "Dtype the forward passes compute in: float32 or bfloat16")->capture_default_str();
  cmd->add_option("--weights-dtype", weights_dtype,
                  "Dtype the weights are held in: auto (as stored, memory-mapped, no copy), float32 or bfloat16; "
                  "converted to --dtype one layer at a time where they differ")
      ->capture_default_str();
  cmd->callback([b, f, t] {
    if (t->count() > 0) o.selector.threshold = threshold;
    // Data-parallel when started with the torchrun environment: the ranks share the sweep's heads.
    static std::shared_ptr<parallel::ProcessGroup> group;
    parallel::run_data_parallel(group, [b, f, t] {
      o.group = group.get();
      TextCodec codec = load_text_codec(dir);
      CausalLM model = io::load_causal_lm(dir, io::resolve_weights_dtype(weights_dtype, dir));
      model->set_compute_dtype(io::parse_dtype(dtype));
      to_compute_device(*model);
      const ModelConfig& c = model->config();
      if (b->count() == 0 && f->count() == 0 && t->count() == 0) {
        o.selector.fraction = 0.03;  // rounded up, as --fraction (heads_for_fraction)
        log_info("no selector given: keeping the top 3% of heads, rounded up: {} of {}",
                 heads_for_fraction(0.03, c.n_query_heads_total()), c.n_query_heads_total());
      }
      if (pairs > 0) {
        o.pairs = pairs;
      } else if (o.task != "kv" && o.task != "mqar") {
        o.pairs = 8;  // phonebook entries; unused by needle and copy
      } else {
        o.pairs = fitting_pairs(c, codec.encode, codec.bos, 50, o.seed);
        if (o.pairs < 50) log_info("50 pairs do not fit the context of {} tokens; using {} pairs", c.max_position_embeddings, o.pairs);
      }
      DiscoveryResult r = discover_heads(model, codec.encode, codec.bos, o, out);
      o.group = nullptr;
      if (!group->is_main()) return;  // rank 0 reports
      log_info("teacher probe accuracy {:.3f} ({} pairs); kept {} heads; wrote {}/heads.json, plan.json, heads.svg, causal.svg, heads.md",
               r.sweep.teacher_accuracy, o.pairs, r.plan.size(), out);
      std::string kept;
      for (const auto& [l, h] : r.plan.kept_heads) kept += fmt::format("{}[{}, {}]", kept.empty() ? "" : ", ", l, h);
      std::printf("%s\n", nlohmann::json({{"teacher_accuracy", r.sweep.teacher_accuracy}, {"pairs", o.pairs},
                                          {"kept_heads", r.plan.to_json(c)["kept_heads"]}, {"out", out}}).dump().c_str());
    });
  });
}

}  // namespace rad::cli
