// tokenizer.json "normalizer" components: Sequence, Prepend, Replace, NFC, NFD, NFKC, NFKD,
// Lowercase, Strip. Any other type is rejected by make_normalizer with an error naming it.
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <memory>
#include <string>

namespace rad {

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  // Rewrites `text` (valid UTF-8) in place.
  virtual void normalize(std::string& text) const = 0;
};

// Returns nullptr for a JSON null.
std::unique_ptr<Normalizer> make_normalizer(const nlohmann::json& config);

}  // namespace rad
