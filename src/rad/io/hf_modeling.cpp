#include "rad/io/hf_modeling.h"

#include <filesystem>

#include "rad/core/atomic_file.h"

namespace rad::io {

const char* const kHfModelingFile = "modeling_radistill.py";

const std::string& hf_modeling_source() {
  static const std::string source =
#include "rad/io/hf_modeling_source.inc"  // generated from python/modeling_radistill.py (CMakeLists.txt)
      ;
  return source;
}

void write_hf_modeling_file(const std::string& model_dir) {
  write_text_atomic((std::filesystem::path(model_dir) / kHfModelingFile).string(), hf_modeling_source());
}

}  // namespace rad::io
