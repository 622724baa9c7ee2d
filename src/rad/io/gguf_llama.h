// GGUF <-> Hugging Face directory for the `llama` architecture (Llama, SmolLM, Mistral without a
// sliding window, ...), both ways.
//
// Tensor names: token_embd <-> model.embed_tokens, output <-> lm_head (absent when tied),
// output_norm <-> model.norm, blk.N.{attn_norm, attn_q, attn_k, attn_v, attn_output, ffn_norm,
// ffn_gate, ffn_up, ffn_down} <-> model.layers.N.{input_layernorm, self_attn.{q,k,v,o}_proj,
// post_attention_layernorm, mlp.{gate,up,down}_proj}; .weight and .bias alike.
//
// RoPE layout: HF checkpoints rotate the two halves of each head (rotate-half), llama.cpp's `llama`
// graph rotates adjacent pairs. llama.cpp's converter therefore reorders the rows of q_proj and
// k_proj (and their biases) within each head: HF row h*(d/2) + i (half h, index i) becomes GGUF
// row 2*i + h. Import undoes it, export applies it.
//
// Tokenizer: the tokenizer.ggml.* metadata of a byte-level BPE ("gpt2") vocabulary is rebuilt into
// tokenizer.json (vocab, merges, CONTROL/USER_DEFINED tokens as added tokens, the pre-tokenizer that
// tokenizer.ggml.pre names) and tokenizer_config.json (bos/eos, chat template).
#pragma once

#include <ATen/ATen.h>
#include <nlohmann/json.hpp>

#include <string>
#include <utility>
#include <vector>

#include "rad/io/gguf.h"
#include "rad/model/config.h"

namespace rad::io {

// Row permutation between HF rotate-half and GGUF interleaved RoPE layouts, for a [n_head * d_head,
// ...] weight or [n_head * d_head] bias.
at::Tensor rope_rows_hf_to_gguf(const at::Tensor& w, int64_t n_head);
at::Tensor rope_rows_gguf_to_hf(const at::Tensor& w, int64_t n_head);

// "model.layers.3.self_attn.q_proj.weight" <-> "blk.3.attn_q.weight"; empty when not a Llama tensor.
std::string hf_to_gguf_name(const std::string& hf_name);
std::string gguf_to_hf_name(const std::string& gguf_name);

// The model configuration of a `llama` GGUF file (validated as config.json would be).
ModelConfig config_from_gguf(const GgufFile& file);

// tokenizer.json and tokenizer_config.json rebuilt from the file's tokenizer metadata.
std::pair<nlohmann::json, nlohmann::json> tokenizer_from_gguf(const GgufFile& file);

// HF-named tensors of the file: dequantised, Q/K rows put back in rotate-half order, cast to
// `dtype` (kFloat or kBFloat16). Checks every shape against `config`; shows progress.
std::vector<std::pair<std::string, at::Tensor>> tensors_from_gguf(const GgufFile& file, const ModelConfig& config,
                                                                 at::ScalarType dtype);

// `radistill import-gguf`: writes config.json, model.safetensors, tokenizer.json,
// tokenizer_config.json and README.md to `out_dir`, each atomically (config.json last).
void import_gguf(const std::string& gguf_path, const std::string& out_dir, at::ScalarType dtype);

// `radistill export-gguf`: a teacher directory (Llama architecture, byte-level BPE tokenizer) to a
// GGUF file that llama.cpp runs. Matrices are stored as `type` (F32, F16 or BF16), 1-D tensors
// (norms, biases) as F32, as llama.cpp's converter does.
void export_gguf(const std::string& model_dir, const std::string& out_path, GgmlType type);

}  // namespace rad::io
