// tokenizer.json "decoder" components: Sequence, ByteLevel, ByteFallback, Metaspace, Replace,
// Strip, Fuse. Any other type is rejected by make_decoder with an error naming it. Semantics follow
// the Hugging Face tokenizers library (Rust).
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <memory>
#include <string>
#include <vector>

namespace rad {

class Decoder {
 public:
  virtual ~Decoder() = default;
  // Transforms the token strings; the decoded text is the concatenation of the result.
  virtual void decode_chain(std::vector<std::string>& tokens) const = 0;
};

// Returns nullptr for a JSON null.
std::unique_ptr<Decoder> make_decoder(const nlohmann::json& config);

}  // namespace rad
