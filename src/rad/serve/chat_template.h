// The chat template of a model directory: tokenizer_config.json's `chat_template` (a Jinja string,
// or a list of {name, template} of which "default" is used), rendered the way Hugging Face's
// apply_chat_template does (messages, add_generation_prompt = true, bos_token, eos_token).
#pragma once

#include <nlohmann/json.hpp>

#include <optional>
#include <string>

#include "rad/serve/jinja.h"

namespace rad::serve {

class ChatTemplate {
 public:
  // The template of DIR/tokenizer_config.json (or of a GGUF file's tokenizer.chat_template), or
  // nullopt when the file or the field is absent.
  // A template that does not parse is an error naming the file and the construct.
  static std::optional<ChatTemplate> load(const std::string& model_dir);
  // From a parsed tokenizer_config.json; nullopt without `chat_template`.
  static std::optional<ChatTemplate> from_config(const nlohmann::json& config, const std::string& where);

  // `messages` must be an array of {"role": string, "content": string} (validated by the caller).
  std::string render(const nlohmann::json& messages) const;

 private:
  JinjaTemplate template_;
  std::string bos_token_, eos_token_;
};

}  // namespace rad::serve
