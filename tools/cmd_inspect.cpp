#include <fmt/format.h>
#include <fmt/ranges.h>

#include <filesystem>

#include "commands.h"
#include "rad/io/checkpoint.h"
#include "rad/io/hf_config.h"
#include "rad/io/hybrid_checkpoint.h"

namespace rad::cli {

namespace {

// The sizes every model reports, teacher or hybrid.
nlohmann::json size_fields(const ModelConfig& c) {
  return {{"n_vocab", c.n_vocab}, {"d_model", c.d_model}, {"n_layer", c.n_layer},
          {"n_head", c.n_head},   {"n_head_kv", c.n_head_kv}, {"d_head", c.d_head}};
}

// A hybrid: the teacher's sizes, the plan per layer and the cache cost (docs/DESIGN.md section 7).
void inspect_hybrid(const std::string& dir, bool as_json) {
  io::HybridModel h = io::load_hybrid(dir, at::kFloat);  // loading also validates plan vs tensors
  const ModelConfig& c = h.config.base;
  const int64_t dtype_bytes = c.torch_dtype == "float32" ? 4 : 2;
  nlohmann::json layers = nlohmann::json::array();
  for (int64_t l = 0; l < c.n_layer; ++l)
    layers.push_back({{"layer", l},
                      {"kept_heads", h.config.plan.heads_in_layer(l)},
                      {"kv_groups", h.config.plan.kv_groups(l, c)},
                      {"ssm_heads", c.n_head - static_cast<int64_t>(h.config.plan.heads_in_layer(l).size())}});
  const auto& s = h.config.ssm;
  nlohmann::json j = size_fields(c);
  j.update({
      {"model_type", kHybridModelType},
      {"teacher_architecture", c.architecture},
      {"kept_heads", h.config.plan.size()},
      {"ssm_heads", h.config.n_ssm_heads()},
      {"ssm", {{"d_state", s.d_state}, {"conv", s.conv}, {"conv_width", s.conv_width}, {"gate", s.gate},
               {"bias", s.bias}, {"input_step", s.input_step}, {"chunk_size", s.chunk_size}, {"init", s.init}}},
      {"layers", layers},
      {"parameters", h.model->parameter_count()},
      {"dtype", c.torch_dtype},
      {"kv_cache_bytes_per_token", h.config.kv_bytes_per_token(dtype_bytes)},
      {"ssm_state_bytes", h.config.ssm_state_bytes()},
      {"teacher_kv_cache_bytes_per_token", c.kv_cache_bytes_per_token(dtype_bytes)},
  });
  if (as_json) {
    std::printf("%s\n", j.dump(2).c_str());
    return;
  }
  fmt::print("{}  (hybrid of {}; {})\n", dir, c.architecture, kHybridModelType);
  fmt::print("  layers x query heads : {} x {} (head dim {}, {} KV heads)\n", c.n_layer, c.n_head, c.d_head, c.n_head_kv);
  fmt::print("  kept attention heads : {} of {}; SSM heads: {}\n", h.config.plan.size(), c.n_query_heads_total(),
             h.config.n_ssm_heads());
  for (int64_t l = 0; l < c.n_layer; ++l) {
    auto kept = h.config.plan.heads_in_layer(l);
    fmt::print("    layer {:>3}: attention heads [{}] (KV groups [{}]), {} SSM heads\n", l, fmt::join(kept, ", "),
               fmt::join(h.config.plan.kv_groups(l, c), ", "), c.n_head - static_cast<int64_t>(kept.size()));
  }
  fmt::print("  SSM                  : d_state {}, conv {}{}, gate {}, bias {}, input step {}, chunk {}, init {}\n",
             s.d_state, s.conv ? "on" : "off", s.conv ? fmt::format(" (width {})", s.conv_width) : "",
             s.gate ? "on" : "off", s.bias ? "on" : "off", s.input_step ? "on" : "off", s.chunk_size, s.init);
  fmt::print("  parameters           : {} ({:.2f} M)\n", h.model->parameter_count(), h.model->parameter_count() / 1e6);
  fmt::print("  dtype                : {}\n", c.torch_dtype);
  fmt::print("  KV cache per token   : {} bytes (kept KV groups; teacher: {})\n", h.config.kv_bytes_per_token(dtype_bytes),
             c.kv_cache_bytes_per_token(dtype_bytes));
  fmt::print("  SSM state (fixed)    : {} bytes per sequence (float32; {} in bf16)\n", h.config.ssm_state_bytes(4),
             h.config.ssm_state_bytes(2));
}

}  // namespace

void register_inspect(CLI::App& app) {
  auto* cmd = app.add_subcommand("inspect", "Show a model directory's architecture, sizes and cache cost");
  static std::string dir;
  static bool as_json = false;
  cmd->add_option("MODEL_DIR", dir, "Hugging Face model directory")->required();
  cmd->add_flag("--json", as_json, "Print JSON instead of text");
  cmd->callback([] {
    if (io::is_hybrid_dir(dir)) return inspect_hybrid(dir, as_json);
    ModelConfig c = io::load_hf_config((std::filesystem::path(dir) / "config.json").string());
    CausalLM model = io::load_causal_lm(dir, at::kFloat);  // loading also validates the weights
    int64_t dtype_bytes = c.torch_dtype == "float32" ? 4 : 2;
    nlohmann::json j = size_fields(c);
    j.update({
        {"architecture", c.architecture},
        {"model_type", c.model_type},
        {"d_ff", c.d_ff},
        {"query_heads_total", c.n_query_heads_total()},
        {"parameters", model->parameter_count()},
        {"dtype", c.torch_dtype},
        {"tie_word_embeddings", c.tie_word_embeddings},
        {"rope_theta", c.rope_theta},
        {"rope_scaling", c.rope_scaling.type},
        {"sliding_window", c.sliding_window},
        {"kv_cache_bytes_per_token", c.kv_cache_bytes_per_token(dtype_bytes)},
    });
    if (as_json) {
      std::printf("%s\n", j.dump(2).c_str());
      return;
    }
    fmt::print("{}  ({})\n", dir, c.architecture);
    fmt::print("  layers x query heads : {} x {} = {} heads (head dim {})\n", c.n_layer, c.n_head,
               c.n_query_heads_total(), c.d_head);
    fmt::print("  KV heads per layer   : {} (groups of {} query heads)\n", c.n_head_kv, c.n_group());
    fmt::print("  d_model / d_ff       : {} / {}\n", c.d_model, c.d_ff);
    fmt::print("  vocabulary           : {}{}\n", c.n_vocab, c.tie_word_embeddings ? " (tied embeddings)" : "");
    fmt::print("  parameters           : {} ({:.2f} M)\n", model->parameter_count(), model->parameter_count() / 1e6);
    fmt::print("  dtype                : {}\n", c.torch_dtype);
    fmt::print("  RoPE                 : theta {} scaling {}\n", c.rope_theta, c.rope_scaling.type);
    if (c.sliding_window > 0) fmt::print("  sliding window       : {}\n", c.sliding_window);
    fmt::print("  KV cache per token   : {} bytes ({})\n", c.kv_cache_bytes_per_token(dtype_bytes), c.torch_dtype);
  });
}

}  // namespace rad::cli
