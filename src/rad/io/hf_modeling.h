// The Hugging Face `transformers` modeling code of radistill hybrids (python/modeling_radistill.py,
// embedded at build time): every hybrid directory gets it as modeling_radistill.py, and its
// config.json's "auto_map" names its classes, so that
// AutoModelForCausalLM.from_pretrained(dir, trust_remote_code=True) loads the hybrid.
#pragma once

#include <string>

namespace rad::io {

// The file name in a hybrid directory (the "auto_map" entries in config.json refer to it).
extern const char* const kHfModelingFile;  // "modeling_radistill.py"

// The contents of python/modeling_radistill.py as built into this binary.
const std::string& hf_modeling_source();

// Writes MODEL_DIR/modeling_radistill.py (atomically).
void write_hf_modeling_file(const std::string& model_dir);

}  // namespace rad::io
