// tokenizer.json "post_processor" components: TemplateProcessing (how BOS/EOS are added),
// ByteLevel (no change to ids), Sequence, BertProcessing and RobertaProcessing (single sequences).
// Any other type is rejected by make_post_processor with an error naming it.
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <memory>
#include <vector>

namespace rad {

class PostProcessor {
 public:
  virtual ~PostProcessor() = default;
  // Adds the special tokens of a single sequence around `ids`.
  virtual void process(std::vector<int64_t>& ids) const = 0;
};

// Returns nullptr for a JSON null.
std::unique_ptr<PostProcessor> make_post_processor(const nlohmann::json& config);

}  // namespace rad
