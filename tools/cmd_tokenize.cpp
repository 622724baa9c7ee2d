#include <cctype>
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "rad/core/atomic_file.h"
#include "rad/core/error.h"
#include "rad/core/log.h"
#include "rad/tokenizer/tokenizer.h"

namespace rad::cli {

std::vector<int64_t> prompt_ids(const std::string& model_dir, const std::string& ids_text, CLI::Option* ids_opt,
                                const std::string& text, CLI::Option* text_opt, bool add_special_tokens) {
  const bool have_ids = ids_opt->count() > 0, have_text = text_opt->count() > 0;
  RAD_CHECK(have_ids != have_text, "give exactly one of --token-ids and --text");
  if (have_ids) return parse_token_ids(ids_text);
  Tokenizer tok = Tokenizer::load(model_dir);
  std::vector<int64_t> ids = encode_prompt(tok, text, add_special_tokens);
  RAD_CHECK(!ids.empty(), "--text: the text encodes to no tokens");
  log_info("--text: {} tokens", ids.size());
  return ids;
}

void add_no_special_tokens_flag(CLI::App* cmd, bool& no_special_tokens) {
  cmd->add_flag("--no-special-tokens", no_special_tokens,
                "Encode prompt text without the tokenizer's special tokens (by default BOS etc. are added as its "
                "post-processor, or tokenizer_config.json's add_bos_token, says; as Hugging Face and llama.cpp do)");
}

void register_tokenize(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "tokenize", "Encode text with DIR/tokenizer.json and print a JSON array of ids, or decode ids (--decode) and print the text");
  static std::string dir, file, text;
  static bool add_special = false, decode = false, skip_special = false, timing = false;
  cmd->add_option("DIR", dir, "Directory with tokenizer.json (and tokenizer_config.json)")->required();
  auto* file_opt = cmd->add_option("--file", file, "Input file: text to encode, or a JSON array of ids with --decode");
  auto* text_opt = cmd->add_option("--text", text, "Input given on the command line instead of --file");
  file_opt->excludes(text_opt);
  cmd->add_flag("--add-special-tokens", add_special, "Add the special tokens of the post-processor (e.g. BOS)");
  cmd->add_flag("--decode", decode, "Decode a JSON array of ids (or comma-separated ids with --text) to text");
  cmd->add_flag("--skip-special-tokens", skip_special, "With --decode: leave special tokens out of the text");
  cmd->add_flag("--time", timing, "Report load and encode time and encode throughput (MB/s, one thread) on stderr");
  cmd->callback([text_opt] {
    const bool text_set = text_opt->count() > 0;
    RAD_CHECK(!file.empty() || text_set, "tokenize: give --file FILE or --text \"...\"");
    std::string input = file.empty() ? text : read_text_file(file);
    auto t0 = std::chrono::steady_clock::now();
    Tokenizer tok = Tokenizer::load(dir);
    auto t1 = std::chrono::steady_clock::now();
    if (!decode) {
      std::vector<int64_t> ids = tok.encode(input, add_special);
      auto t2 = std::chrono::steady_clock::now();
      if (timing) {
        double load_s = std::chrono::duration<double>(t1 - t0).count(), enc_s = std::chrono::duration<double>(t2 - t1).count();
        std::fprintf(stderr, "load %.3f s; encode %zu bytes -> %zu tokens in %.3f s: %.2f MB/s\n", load_s, input.size(), ids.size(),
                     enc_s, input.size() / 1e6 / enc_s);
      }
      std::printf("%s\n", nlohmann::json(ids).dump().c_str());
      log_debug("{} bytes -> {} tokens", input.size(), ids.size());
      return;
    }
    std::vector<int64_t> ids;
    std::string trimmed = input;
    while (!trimmed.empty() && std::isspace(static_cast<unsigned char>(trimmed.back()))) trimmed.pop_back();
    if (!trimmed.empty() && trimmed.front() == '[') {
      try {
        ids = nlohmann::json::parse(trimmed).get<std::vector<int64_t>>();
      } catch (const nlohmann::json::exception& e) {
        fail("tokenize --decode: {} is not a JSON array of integers: {}", file.empty() ? "--text" : file, e.what());
      }
    } else if (!trimmed.empty()) {
      ids = parse_token_ids(trimmed);
    }
    std::string out = tok.decode(ids, skip_special);
    std::fwrite(out.data(), 1, out.size(), stdout);
    std::fputc('\n', stdout);
  });
}

}  // namespace rad::cli
