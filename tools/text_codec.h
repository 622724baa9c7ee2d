// A model directory's tokenizer as the tasks and trainers need it: an encoder without special
// tokens, plus the BOS id when the checkpoint's post-processor adds one.
#pragma once

#include <optional>
#include <string>

#include "rad/tasks/scorer.h"
#include "rad/tokenizer/tokenizer.h"

namespace rad::cli {

struct TextCodec {
  Tokenizer tokenizer;
  tasks::Encoder encode;
  std::optional<int64_t> bos;
};

// Loads DIR/tokenizer.json; errors name the directory.
TextCodec load_text_codec(const std::string& dir);

}  // namespace rad::cli
