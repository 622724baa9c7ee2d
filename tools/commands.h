// Subcommands of the `radistill` CLI; each file cmd_*.cpp registers one.
#pragma once

#include <CLI/CLI.hpp>

#include <string>
#include <vector>

namespace rad::cli {

void register_env(CLI::App& app);
void register_inspect(CLI::App& app);
void register_forward(CLI::App& app);
void register_generate(CLI::App& app);
void register_tokenize(CLI::App& app);
void register_train_tokenizer(CLI::App& app);
void register_eval_tasks(CLI::App& app);
void register_pretrain(CLI::App& app);
void register_heads(CLI::App& app);
void register_distill(CLI::App& app);
void register_shrink(CLI::App& app);
void register_eval(CLI::App& app);
void register_convert(CLI::App& app);
void register_export_data(CLI::App& app);
void register_run(CLI::App& app);
void register_bench(CLI::App& app);
void register_chat(CLI::App& app);
void register_import_gguf(CLI::App& app);
void register_export_gguf(CLI::App& app);
void register_quantize(CLI::App& app);
void register_serve(CLI::App& app);
void register_launch(CLI::App& app);
void register_bank(CLI::App& app);
void register_select(CLI::App& app);
void register_bank_curve(CLI::App& app);

// The global options (before the subcommand), so `run` can pass them on to the stages it starts.
struct GlobalOptions {
  int threads = 0;
  std::string device = "cpu";  // --device: where training, head sweeps and evaluation compute
  bool quiet = false;
  bool verbose = false;
};
GlobalOptions& global_options();

// Refuses (rad::Error naming `what`) unless --device is cpu: the inference engine (generate, chat,
// bench, serve) runs on the CPU only.
void require_cpu_device(const std::string& what);

// The prompt of forward/generate: --token-ids as given, or --text encoded with MODEL_DIR's tokenizer
// by rad::encode_prompt (special tokens such as BOS added unless add_special_tokens is false).
// Exactly one must be given.
std::vector<int64_t> prompt_ids(const std::string& model_dir, const std::string& ids_text, CLI::Option* ids_opt,
                                const std::string& text, CLI::Option* text_opt, bool add_special_tokens = true);

// --no-special-tokens, one name and meaning for forward, generate, chat, bench and serve: prompts
// are encoded without the tokenizer's special tokens (rad::encode_prompt).
void add_no_special_tokens_flag(CLI::App* cmd, bool& no_special_tokens);

// "mqar,kv" -> {"mqar", "kv"} (empty items dropped).
std::vector<std::string> split_comma_list(const std::string& text);

// "1,5,9" -> {1, 5, 9}; throws rad::Error naming the bad element.
std::vector<int64_t> parse_token_ids(const std::string& text);

}  // namespace rad::cli
