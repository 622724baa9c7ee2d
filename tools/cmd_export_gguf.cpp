// `radistill export-gguf TEACHER_DIR OUT.gguf`: a teacher in llama.cpp's format.
#include "commands.h"
#include "rad/io/gguf_llama.h"

namespace rad::cli {

void register_export_gguf(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "export-gguf",
      "Write a teacher (Llama architecture, byte-level BPE tokenizer) as a GGUF file that llama.cpp runs: matrices as "
      "--dtype, norms and biases as f32");
  static std::string model_dir, out_path, dtype = "f32";
  cmd->add_option("TEACHER_DIR", model_dir, "Teacher model directory (Hugging Face format)")
      ->required()
      ->check(CLI::ExistingDirectory);
  cmd->add_option("OUT", out_path, "Output .gguf file (written atomically)")->required();
  cmd->add_option("--dtype", dtype, "Tensor type of the weight matrices (block types: rows that are not whole blocks "
                                     "fall back as llama-quantize does, q4_k to q5_0 and q6_k to q8_0, else stay f16)")
      ->capture_default_str()
      ->check(CLI::IsMember({"f32", "f16", "bf16", "q8_0", "q4_0", "q5_0", "q4_k", "q6_k"}, CLI::ignore_case));
  cmd->callback([] {
    io::export_gguf(model_dir, out_path, *io::ggml_type_from_name(dtype));
  });
}

}  // namespace rad::cli
