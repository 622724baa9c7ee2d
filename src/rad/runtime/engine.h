// The runtime: a libtorch-free inference engine for the teacher (Llama family) and the per-head
// hybrid (docs/DESIGN.md sections 4, 7, 10). Same math as rad/model (HF Llama semantics, float32
// activations), weights read from the memory-mapped safetensors or GGUF file in their stored dtype.
//
//   auto model = runtime::Model::load(dir);           // teacher or hybrid directory
//   runtime::Session s(model, {.n_ctx = 4096});         // caches + scratch, allocated once
//   const float* logits = s.forward(prompt.data(), prompt.size());  // prefill (chunked)
//   logits = s.forward(&next, 1);                        // one decode step, no allocation
//
// Caches (per sequence): K/V for the kept KV groups only (one entry per group, shared by the
// group's kept heads), a ring of the last `sliding_window` positions when the config has one;
// the SSM state [P, N] of every SSM head and, with the conv option, its last conv_width - 1 inputs.
// The SSM and conv states are float32; K/V are float32 or, with SessionOptions::cache_type = kF16,
// IEEE half (llama.cpp's default, -ctk/-ctv f16): rounded once when computed (before attention, so
// a prefill chunk's own keys equal what the ring will hold) and converted on the fly by the
// attention kernels, float32 accumulation. SSM heads run the step recurrence in prefill too: linear in the prompt length.
//
// Continuous batching: BatchDecoder::step advances several Sessions of one Model by one token each
// in one pass - the projections, MLP and LM head as one matmul over the B rows (each weight row
// read once per step for all sessions), attention and SSM steps per session against its own cache.
// Its logits equal each session's own step() (same kernels, same order of operations; tested).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "rad/model/config.h"
#include "rad/model/hybrid_config.h"
#include "rad/runtime/kernels.h"
#include "rad/runtime/tensor_store.h"
#include "rad/runtime/thread_pool.h"

namespace rad::runtime {

struct LayerWeights {
  std::vector<float> input_norm, post_norm;  // [d_model]
  // Kept heads (absent when the layer keeps none): q [nk * Dh, d], k/v [ng * Dh, d].
  Mat q, k, v, o;  // o: [d, n_head * Dh], all heads in the teacher's order
  std::vector<float> q_b, k_b, v_b, o_b;
  std::vector<int64_t> kept_heads, kept_groups, ssm_heads;
  std::vector<int64_t> head_group;  // per kept head: its index in kept_groups
  // SSM heads (absent when the layer keeps every head): x [Hs * P, d], B/C [Hs * N, d], a [Hs, d].
  Mat x, B, C, a, z;
  std::vector<float> x_b, B_b, C_b, a_b, z_b, D;  // D [Hs]
  std::vector<float> conv;                         // [Hs * (P + 2N), W] over channels [x | B | C]
  Mat gate, up, down;
  std::vector<float> gate_b, up_b, down_b;
  int64_t nk() const { return static_cast<int64_t>(kept_heads.size()); }
  int64_t ng() const { return static_cast<int64_t>(kept_groups.size()); }
  int64_t hs() const { return static_cast<int64_t>(ssm_heads.size()); }
};

// Element type of the K/V cache.
enum class CacheType { kF32, kF16 };
int64_t cache_type_bytes(CacheType t);  // 4 or 2
const char* cache_type_name(CacheType t);  // "f32" / "f16"
// "f32" or "f16"; anything else is a rad::Error naming `flag` and the allowed values.
CacheType parse_cache_type(const std::string& value, const std::string& flag = "--cache-type");

class Model {
 public:
  // Loads a teacher (LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM) or hybrid directory, or
  // a GGUF file (llama.cpp's `llama` architecture, or a hybrid `radistill quantize` wrote), whose
  // Q8_0 / Q4_0 matrices stay quantised. Every tensor is checked against the config (name, shape,
  // dtype); unknown tensors are an error.
  static std::shared_ptr<const Model> load(const std::string& model_dir);

  const ModelConfig& config() const { return config_; }
  bool is_hybrid() const { return hybrid_; }
  const SsmOptions& ssm() const { return ssm_; }
  const std::vector<LayerWeights>& layers() const { return layers_; }
  const Mat& embed() const { return embed_; }
  const Mat& lm_head() const { return lm_head_; }  // the embedding when tied
  const std::vector<float>& final_norm() const { return final_norm_; }
  const std::vector<float>& inv_freq() const { return inv_freq_; }
  const std::string& dir() const { return dir_; }
  std::string weight_dtypes() const;   // e.g. "F32" or "BF16+F32"
  int64_t parameter_count() const { return n_params_; }
  int64_t weight_bytes() const { return weight_bytes_; }  // bytes of all weights as stored

  // Analytic cache bytes of one sequence of `length` tokens (docs/DESIGN.md section 7), with the sliding
  // window capping the KV part; K/V at `kv` (2 or 4 bytes), SSM/conv state float32.
  int64_t cache_bytes(int64_t length, CacheType kv = CacheType::kF32) const;

 private:
  Model() = default;
  std::string dir_;
  ModelConfig config_;
  bool hybrid_ = false;
  SsmOptions ssm_;
  std::unique_ptr<TensorStore> store_;
  std::vector<LayerWeights> layers_;
  Mat embed_, lm_head_;
  std::vector<float> final_norm_, inv_freq_;
  std::vector<std::string> dtypes_seen_;
  int64_t n_params_ = 0, weight_bytes_ = 0;
  friend class ModelLoader;
};

struct SessionOptions {
  int64_t n_ctx = 0;          // tokens this session may hold; 0: the config's max_position_embeddings
  int64_t prefill_chunk = 64; // prompt tokens per batched pass
  int threads = 0;            // 0: all cores this process may use
  CacheType cache_type = CacheType::kF32;  // K/V element type
};

struct CacheBytes {
  int64_t kv_allocated = 0;   // K/V buffers as allocated (capacity x kept groups)
  int64_t kv_used = 0;        // K/V bytes holding the current sequence
  int64_t ssm = 0;            // SSM states + conv states (fixed size)
  int64_t allocated() const { return kv_allocated + ssm; }
  int64_t used() const { return kv_used + ssm; }
};

class BatchDecoder;

// Activation rows of one forward pass, shared by Session (the tokens of one chunk) and BatchDecoder
// (one token of each session), sized for `rows` rows of the model's widest layer.
struct ActivationScratch {
  std::vector<float> x, xn, q, k, v, sx, sB, sC, sa, sz, heads, g, u;
  std::vector<float> cos, sin;  // [rows, Dh / 2]
  void size_for(const Model& model, int64_t rows);
};

class Session {
 public:
  Session(std::shared_ptr<const Model> model, const SessionOptions& options = {});
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // Appends `n` tokens to the sequence and returns the logits [n_vocab] after the last one (valid
  // until the next call). With `all_logits` ([n, n_vocab]) fills the logits of every token.
  // Throws rad::Error for a token id outside the vocabulary or when the sequence would exceed n_ctx.
  const float* forward(const int64_t* tokens, int64_t n, float* all_logits = nullptr);
  const float* step(int64_t token) { return forward(&token, 1); }
  void reset();  // empties the caches (keeps the buffers)

  int64_t length() const { return length_; }
  int64_t n_ctx() const { return n_ctx_; }
  int threads() const { return pool_.size(); }
  CacheType cache_type() const { return cache_type_; }
  CacheBytes cache_bytes() const;
  const Model& model() const { return *model_; }

 private:
  friend class BatchDecoder;  // reads and advances the caches and length_ of the sessions it steps
  void run_chunk(const int64_t* tokens, int64_t T, float* all_logits);
  void layer_forward(int64_t l, int64_t T);

  std::shared_ptr<const Model> model_;
  ThreadPool pool_;
  int64_t n_ctx_ = 0, kv_cap_ = 0, chunk_ = 0, length_ = 0;
  CacheType cache_type_ = CacheType::kF32;
  struct LayerState {
    std::vector<float> k, v;     // [ng, kv_cap, Dh]: position p at slot p % kv_cap (cache type f32)
    std::vector<uint16_t> kh, vh;  // the same in f16 (cache type f16; then k, v are empty)
    std::vector<float> ssm;      // [Hs, P, N]
    std::vector<float> conv;     // [Hs * (P + 2N), W - 1]: the last inputs of each channel, oldest first
  };
  std::vector<LayerState> state_;
  ActivationScratch a_;           // one chunk of T <= chunk_ tokens
  std::vector<float> logits_;     // [n_vocab]
  int64_t group_heads_ = 1;       // kept heads attended together per KV group pass
  std::vector<float> scores_;     // [threads, group_heads, kv_cap + chunk]
};

// One decode step for many sessions at once (the server's continuous batching).
//
//   runtime::BatchDecoder dec(model, {.threads = 1});
//   Session* batch[] = {&a, &b, &c};  int64_t next[] = {ta, tb, tc};
//   const float* logits = dec.step(batch, next, 3);   // [3, n_vocab]; row i: session batch[i]
//
// Each session may be at its own length, context (n_ctx) and cache type; all must be sessions of
// the decoder's model, each at most once per step. The scratch (B rows of activations, B rows of
// logits, per-thread attention scores) grows to the largest batch and context seen and is then
// reused: no allocation per token once warm (reserve() sizes it up front). A session's own
// forward() logits buffer is not touched by step().
struct BatchDecoderOptions {
  int threads = 0;  // 0: all cores this process may use
};

class BatchDecoder {
 public:
  explicit BatchDecoder(std::shared_ptr<const Model> model, const BatchDecoderOptions& options = {});
  ~BatchDecoder();
  BatchDecoder(const BatchDecoder&) = delete;
  BatchDecoder& operator=(const BatchDecoder&) = delete;

  // Appends tokens[i] to sessions[i] for i < B and returns the logits [B, n_vocab] after each
  // (valid until the next call). Everything is checked before any cache changes: a session of
  // another model, one listed twice, a full context or a token outside the vocabulary is a
  // rad::Error and leaves every session as it was.
  const float* step(Session* const* sessions, const int64_t* tokens, int64_t B);
  // Sizes the scratch for batches of up to max_batch sessions of up to max_kv cached positions.
  void reserve(int64_t max_batch, int64_t max_kv);
  int64_t capacity() const { return cap_b_; }
  int threads() const { return pool_.size(); }

 private:
  void layer(int64_t l, Session* const* sessions, int64_t B);

  std::shared_ptr<const Model> model_;
  ThreadPool pool_;
  int64_t cap_b_ = 0, cap_kv_ = 0;
  ActivationScratch a_;         // [B, ...] rows, the batch in place of a chunk's tokens
  std::vector<float> logits_;  // [B, n_vocab]
  int64_t group_heads_ = 1;     // kept heads attended together per KV group pass
  std::vector<float> scores_;  // [threads, group_heads_, cap_kv_]
};

}  // namespace rad::runtime
