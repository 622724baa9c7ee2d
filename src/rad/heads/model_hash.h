// A content hash of a model (config + every parameter's name, dtype, shape and bytes), so head
// scores and plans can be tied to the exact weights they were measured on.
#pragma once

#include <string>

#include "rad/model/causal_lm.h"

namespace rad {

// "fnv1a64:<16 hex digits>". FNV-1a is not cryptographic; it detects mix-ups, not tampering.
std::string model_hash(CausalLM& model);

}  // namespace rad
