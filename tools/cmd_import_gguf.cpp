// `radistill import-gguf MODEL.gguf OUT_DIR`: a llama.cpp GGUF model as a Hugging Face directory.
#include "commands.h"
#include "rad/io/gguf_llama.h"

namespace rad::cli {

void register_import_gguf(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "import-gguf",
      "Import a GGUF model (llama architecture; F32/F16/BF16/Q8_0/Q4_0/Q4_1/Q4_K/Q6_K tensors, byte-level BPE "
      "tokenizer) as a Hugging Face directory: config.json, model.safetensors, tokenizer.json, tokenizer_config.json");
  static std::string gguf_path, out_dir, dtype = "float32";
  cmd->add_option("MODEL", gguf_path, "GGUF file")->required()->check(CLI::ExistingFile);
  cmd->add_option("OUT_DIR", out_dir, "Output directory (created; files in it are replaced atomically)")->required();
  cmd->add_option("--dtype", dtype, "Storage dtype of the dequantised weights")
      ->capture_default_str()
      ->check(CLI::IsMember({"float32", "bfloat16", "float16"}));
  // float16: an F16 GGUF (llama.cpp's F16 file) imports bit for bit, so the runtime and llama.cpp
  // can be timed on the same weights.
  cmd->callback([] {
    io::import_gguf(gguf_path, out_dir,
                    dtype == "bfloat16" ? at::kBFloat16 : dtype == "float16" ? at::kHalf : at::kFloat);
  });
}

}  // namespace rad::cli
