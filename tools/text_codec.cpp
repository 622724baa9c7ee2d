#include "text_codec.h"

#include <filesystem>

#include "rad/core/error.h"

namespace rad::cli {

TextCodec load_text_codec(const std::string& dir) {
  RAD_CHECK(std::filesystem::exists(std::filesystem::path(dir) / "tokenizer.json"),
            "{}: no tokenizer.json (text input needs the model's tokenizer; pass token ids instead)", dir);
  TextCodec codec{Tokenizer::load(dir), {}, std::nullopt};
  Tokenizer tok = codec.tokenizer;
  codec.encode = [tok](const std::string& text) { return tok.encode(text, false); };
  codec.bos = tasks::leading_bos(tok);
  return codec;
}

}  // namespace rad::cli
