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
  // BOS is whatever the post-processor puts before the text (e.g. Llama's <s>, none for Qwen2).
  std::vector<int64_t> plain = tok.encode("a", false), special = tok.encode("a", true);
  if (special.size() > plain.size() && !std::equal(plain.begin(), plain.end(), special.begin()))
    codec.bos = special.front();
  return codec;
}

}  // namespace rad::cli
