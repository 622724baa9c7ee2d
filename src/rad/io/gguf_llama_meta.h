// The libtorch-free half of GGUF's `llama` mapping (gguf_llama.h has the tensor half): tensor names,
// the model configuration and the tokenizer, which the runtime needs to run a GGUF file directly.
//
// Tensor names: token_embd <-> model.embed_tokens, output <-> lm_head (absent when tied),
// output_norm <-> model.norm, blk.N.{attn_norm, attn_q, attn_k, attn_v, attn_output, ffn_norm,
// ffn_gate, ffn_up, ffn_down} <-> model.layers.N.{input_layernorm, self_attn.{q,k,v,o}_proj,
// post_attention_layernorm, mlp.{gate,up,down}_proj}; .weight and .bias alike.
//
// RoPE layout: HF checkpoints rotate the two halves of each head (rotate-half), llama.cpp's `llama`
// graph rotates adjacent pairs, so llama.cpp's converter reorders the rows of q_proj and k_proj
// within each head: HF row h*(Dh/2) + i (half h, index i) is GGUF row 2*i + h.
//
// Hybrids: radistill writes them as architecture "radistill-hybrid": the hybrid's config.json as the
// string `radistill.config`, the teacher's tensors under their GGUF names (kept heads' Q/K rows
// permuted as above) and the SSM heads' tensors under their Hugging Face names.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "rad/io/gguf.h"
#include "rad/model/config.h"

namespace rad::io {

constexpr const char* kGgufHybridArchitecture = "radistill-hybrid";
constexpr const char* kGgufRadistillConfigKey = "radistill.config";

// GGUF token types (llama.cpp's llama_token_type).
namespace gguf_token {
constexpr int kNormal = 1, kControl = 3, kUserDefined = 4, kUnused = 5;
}

// HF layer suffix <-> GGUF layer suffix (without .weight / .bias).
const std::vector<std::pair<std::string, std::string>>& gguf_layer_names();

// "model.layers.3.self_attn.q_proj.weight" <-> "blk.3.attn_q.weight"; empty when not a Llama tensor.
std::string hf_to_gguf_name(const std::string& hf_name);
std::string gguf_to_hf_name(const std::string& gguf_name);

// The HF row of GGUF row `gguf_row` of a Q or K projection with heads of `d_head` rows.
inline int64_t rope_row_gguf_to_hf(int64_t gguf_row, int64_t d_head) {
  const int64_t head = gguf_row / d_head, r = gguf_row % d_head;
  return head * d_head + (r % 2) * (d_head / 2) + r / 2;
}

// The model configuration of a `llama` GGUF file (validated as config.json would be).
ModelConfig config_from_gguf(const GgufFile& file);

// tokenizer.json and tokenizer_config.json rebuilt from the file's tokenizer metadata.
std::pair<nlohmann::json, nlohmann::json> tokenizer_from_gguf(const GgufFile& file);

// The GGUF pre-tokenizer name ("smollm", "llama-bpe", ...) of a tokenizer.json pre_tokenizer; throws
// naming `where` when it has none.
std::string gguf_pre_name_for(const nlohmann::json& pre_tokenizer, const std::string& where);

}  // namespace rad::io
