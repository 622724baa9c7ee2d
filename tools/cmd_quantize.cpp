// `radistill quantize MODEL_DIR --type q8_0|q4_0|q5_0|q4_k|q6_k [-o OUT.gguf]`: a teacher or hybrid as a GGUF file
// whose matrices are quantised, for the runtime (generate, chat, bench, serve) to run as stored.
#include <filesystem>

#include "commands.h"
#include "rad/io/gguf_llama.h"

namespace rad::cli {

void register_quantize(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "quantize",
      "Quantise a teacher or hybrid directory into a GGUF file (Q8_0, Q4_0, Q5_0, Q4_K or Q6_K matrices, as llama.cpp "
      "stores them) that "
      "generate, chat, bench and serve run without dequantising; a teacher's file also runs in llama.cpp");
  static std::string model_dir, out_path, type = "q8_0";
  cmd->add_option("MODEL_DIR", model_dir, "Teacher or hybrid model directory")->required()->check(CLI::ExistingDirectory);
  cmd->add_option("--type", type, "Block type of the weight matrices (rows that are not whole blocks fall back as "
                                  "llama-quantize does: q4_k to q5_0, q6_k to q8_0, else F16)")
      ->capture_default_str()
      ->check(CLI::IsMember({"q8_0", "q4_0", "q5_0", "q4_k", "q6_k"}, CLI::ignore_case));
  cmd->add_option("-o,--out", out_path, "Output .gguf file (default: MODEL_DIR-TYPE.gguf beside the directory)");
  cmd->callback([] {
    std::string out = out_path;
    if (out.empty()) {
      std::filesystem::path dir = std::filesystem::path(model_dir).lexically_normal();
      if (dir.filename().empty()) dir = dir.parent_path();
      out = dir.string() + "-" + type + ".gguf";
    }
    io::export_gguf(model_dir, out, *io::ggml_type_from_name(type), /*allow_hybrid=*/true);
  });
}

}  // namespace rad::cli
