// GGUF <-> Hugging Face directory for the `llama` architecture (Llama, SmolLM, Mistral without a
// sliding window, ...), both ways. The names, the configuration and the tokenizer (no libtorch, also
// used by the runtime to load GGUF directly) are in gguf_llama_meta.h; the tensors here.
//
// Import undoes the RoPE row order of Q/K that gguf_llama_meta.h describes, export applies it.
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
#include "rad/io/gguf_llama_meta.h"
#include "rad/model/config.h"

namespace rad::io {

// Row permutation between HF rotate-half and GGUF interleaved RoPE layouts, for a [n_head * d_head,
// ...] weight or [n_head * d_head] bias.
at::Tensor rope_rows_hf_to_gguf(const at::Tensor& w, int64_t n_head);
at::Tensor rope_rows_gguf_to_hf(const at::Tensor& w, int64_t n_head);

// HF-named tensors of the file: dequantised, Q/K rows put back in rotate-half order, cast to
// `dtype` (kFloat or kBFloat16). Checks every shape against `config`; shows progress.
std::vector<std::pair<std::string, at::Tensor>> tensors_from_gguf(const GgufFile& file, const ModelConfig& config,
                                                                 at::ScalarType dtype);

// `radistill import-gguf`: writes config.json, model.safetensors, tokenizer.json,
// tokenizer_config.json and README.md to `out_dir`, each atomically (config.json last).
void import_gguf(const std::string& gguf_path, const std::string& out_dir, at::ScalarType dtype);

// `radistill export-gguf` / `radistill quantize`: a model directory (Llama architecture, byte-level
// BPE tokenizer) to a GGUF file. Matrices are stored as `type` (F32, F16, BF16, Q8_0 or Q4_0; a
// quantised type only for matrices whose rows are whole blocks of 32, the others as F16), 1-D
// tensors (norms, biases) as F32, as llama.cpp's converter does. A teacher becomes the `llama`
// architecture llama.cpp runs; a hybrid (refused unless `allow_hybrid`) becomes the
// `radistill-hybrid` architecture that only radistill's runtime loads (gguf_llama_meta.h).
void export_gguf(const std::string& model_dir, const std::string& out_path, GgmlType type, bool allow_hybrid = false);

}  // namespace rad::io
