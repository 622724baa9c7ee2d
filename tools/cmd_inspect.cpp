#include <fmt/format.h>

#include <filesystem>

#include "commands.h"
#include "rad/io/checkpoint.h"
#include "rad/io/hf_config.h"

namespace rad::cli {

void register_inspect(CLI::App& app) {
  auto* cmd = app.add_subcommand("inspect", "Show a model directory's architecture, sizes and cache cost");
  static std::string dir;
  static bool as_json = false;
  cmd->add_option("MODEL_DIR", dir, "Hugging Face model directory")->required();
  cmd->add_flag("--json", as_json, "Print JSON instead of text");
  cmd->callback([] {
    ModelConfig c = io::load_hf_config((std::filesystem::path(dir) / "config.json").string());
    CausalLM model = io::load_causal_lm(dir, at::kFloat);  // loading also validates the weights
    int64_t dtype_bytes = c.torch_dtype == "float32" ? 4 : 2;
    nlohmann::json j = {
        {"architecture", c.architecture},
        {"model_type", c.model_type},
        {"n_vocab", c.n_vocab},
        {"d_model", c.d_model},
        {"n_layer", c.n_layer},
        {"n_head", c.n_head},
        {"n_head_kv", c.n_head_kv},
        {"d_head", c.d_head},
        {"d_ff", c.d_ff},
        {"query_heads_total", c.n_query_heads_total()},
        {"parameters", model->parameter_count()},
        {"dtype", c.torch_dtype},
        {"tie_word_embeddings", c.tie_word_embeddings},
        {"rope_theta", c.rope_theta},
        {"rope_scaling", c.rope_scaling.type},
        {"sliding_window", c.sliding_window},
        {"kv_cache_bytes_per_token", c.kv_cache_bytes_per_token(dtype_bytes)},
    };
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
