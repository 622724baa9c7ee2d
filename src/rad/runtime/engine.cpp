#include "rad/runtime/engine.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "rad/core/atomic_file.h"
#include "rad/core/error.h"
#include "rad/io/gguf.h"
#include "rad/io/gguf_llama_meta.h"
#include "rad/io/hf_config.h"
#include "rad/model/rope_frequencies.h"
#include "rad/runtime/kernels_blocks.h"

namespace rad::runtime {
namespace fs = std::filesystem;

// ---------------------------------------------------------------- loading

class ModelLoader {
 public:
  static std::shared_ptr<const Model> load(const std::string& dir);

 private:
  explicit ModelLoader(Model* m) : m_(m) {}
  Mat mat(const std::string& name, int64_t rows, int64_t cols) {
    DType dt;
    const TensorView& t = m_->store_->get(name, {rows, cols}, &dt);
    note(dt, t);
    return Mat{t.data, dt, rows, cols};
  }
  std::vector<float> vec(const std::string& name, const std::vector<int64_t>& shape) {
    DType dt;
    const TensorView& t = m_->store_->get(name, shape, &dt);
    note(dt, t);
    std::vector<float> out(static_cast<size_t>(t.numel()));
    to_f32(t.data, dt, out.data(), t.numel());
    return out;
  }
  void note(DType dt, const TensorView& t) {
    std::string n = dtype_name(dt);
    if (std::find(m_->dtypes_seen_.begin(), m_->dtypes_seen_.end(), n) == m_->dtypes_seen_.end())
      m_->dtypes_seen_.push_back(n);
    m_->n_params_ += t.numel();
    m_->weight_bytes_ += static_cast<int64_t>(t.bytes);
  }
  void load_layer(int64_t l, const HybridConfig* hc);
  Model* m_;
};

std::shared_ptr<const Model> Model::load(const std::string& dir) { return ModelLoader::load(dir); }

std::shared_ptr<const Model> ModelLoader::load(const std::string& dir) {
  std::shared_ptr<Model> m(new Model());
  m->dir_ = dir;
  std::unique_ptr<HybridConfig> hc;
  // A config.json (or radistill's copy of it in a GGUF file): a hybrid's or a Hugging Face teacher's.
  auto take_config_json = [&](const std::string& text, const std::string& where) {
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(text);
    } catch (const nlohmann::json::exception& e) {
      fail("{}: not valid JSON: {}", where, e.what());
    }
    if (HybridConfig::is_hybrid_json(j)) {
      hc = std::make_unique<HybridConfig>(HybridConfig::from_json(j, where));
      m->config_ = hc->base;
      m->hybrid_ = true;
      m->ssm_ = hc->ssm;
    } else {
      m->config_ = io::config_from_hf_json(j, where);
    }
  };
  std::shared_ptr<const io::GgufFile> gguf;
  std::string cfg_path;
  if (fs::is_regular_file(dir)) {
    // One GGUF file: llama.cpp's `llama` architecture, or a hybrid radistill wrote (radistill.config).
    gguf = io::GgufFile::open(dir);
    cfg_path = dir;
    if (auto text = gguf->opt_string(io::kGgufRadistillConfigKey))
      take_config_json(*text, dir + " (metadata " + io::kGgufRadistillConfigKey + ")");
    else
      m->config_ = io::config_from_gguf(*gguf);
  } else {
    cfg_path = (fs::path(dir) / "config.json").string();
    RAD_CHECK(fs::is_directory(dir), "{}: not a directory (expected a model directory or a .gguf file)", dir);
    RAD_CHECK(fs::exists(cfg_path),
              "{}: no config.json (expected a Hugging Face or radistill hybrid model directory, or a .gguf file)", dir);
    take_config_json(read_text_file(cfg_path), cfg_path);
  }
  const ModelConfig& c = m->config_;
  RAD_CHECK(c.d_head % 2 == 0, "{}: head_dim {} must be even for RoPE", cfg_path, c.d_head);
  m->store_ = gguf ? TensorStore::open_gguf(gguf, c.d_head) : TensorStore::open_dir(dir);
  ModelLoader L(m.get());
  m->embed_ = L.mat("model.embed_tokens.weight", c.n_vocab, c.d_model);
  m->lm_head_ = c.tie_word_embeddings ? m->embed_ : L.mat("lm_head.weight", c.n_vocab, c.d_model);
  m->final_norm_ = L.vec("model.norm.weight", {c.d_model});
  for (int64_t l = 0; l < c.n_layer; ++l) L.load_layer(l, hc.get());
  std::set<std::string> ignore;
  if (c.tie_word_embeddings) ignore.insert("lm_head.weight");  // as the libtorch loader
  std::vector<std::string> extra = m->store_->unused(ignore);
  if (!extra.empty()) {
    std::string list;
    for (size_t i = 0; i < extra.size() && i < 8; ++i) list += (i ? ", " : "") + extra[i];
    fail("{}: {} tensor(s) the config does not explain: {}{} (the config and the weights do not match)", dir,
         extra.size(), list, extra.size() > 8 ? ", ..." : "");
  }
  // RoPE inverse frequencies: the one definition the libtorch model uses too.
  m->inv_freq_ = rope_inverse_frequencies(c);
  return m;
}

// The largest SSM head dim the runtime takes (a stack buffer per head and token; checked at load).
constexpr int64_t kMaxSsmHeadDim = 1024;

void ModelLoader::load_layer(int64_t l, const HybridConfig* hc) {
  const ModelConfig& c = m_->config_;
  LayerWeights w;
  const std::string p = "model.layers." + std::to_string(l) + ".";
  const int64_t d = c.d_model, Dh = c.d_head;
  w.input_norm = vec(p + "input_layernorm.weight", {d});
  w.post_norm = vec(p + "post_attention_layernorm.weight", {d});
  if (hc != nullptr) {
    w.kept_heads = hc->plan.heads_in_layer(l);
    w.kept_groups = hc->plan.kv_groups(l, c);
  } else {
    for (int64_t h = 0; h < c.n_head; ++h) w.kept_heads.push_back(h);
    for (int64_t g = 0; g < c.n_head_kv; ++g) w.kept_groups.push_back(g);
  }
  std::vector<bool> kept(c.n_head, false);
  for (int64_t h : w.kept_heads) kept[h] = true;
  for (int64_t h = 0; h < c.n_head; ++h)
    if (!kept[h]) w.ssm_heads.push_back(h);
  for (int64_t h : w.kept_heads) {
    auto it = std::find(w.kept_groups.begin(), w.kept_groups.end(), h / c.n_group());
    w.head_group.push_back(it - w.kept_groups.begin());
  }
  const std::string a = p + "self_attn.";
  const int64_t nk = w.nk(), ng = w.ng(), hs = w.hs();
  if (nk > 0) {
    w.q = mat(a + "q_proj.weight", nk * Dh, d);
    w.k = mat(a + "k_proj.weight", ng * Dh, d);
    w.v = mat(a + "v_proj.weight", ng * Dh, d);
    if (c.qkv_bias) {
      w.q_b = vec(a + "q_proj.bias", {nk * Dh});
      w.k_b = vec(a + "k_proj.bias", {ng * Dh});
      w.v_b = vec(a + "v_proj.bias", {ng * Dh});
    }
  }
  w.o = mat(a + "o_proj.weight", d, c.n_head * Dh);
  if (c.o_bias) w.o_b = vec(a + "o_proj.bias", {d});
  if (hs > 0) {
    const SsmOptions& o = m_->ssm_;
    const int64_t P = Dh, N = o.d_state;
    RAD_CHECK(P <= kMaxSsmHeadDim, "layer {}: SSM head dim {} exceeds the runtime's limit of {}", l, P, kMaxSsmHeadDim);
    const std::string s = a + "ssm.";
    w.x = mat(s + "x_proj.weight", hs * P, d);
    w.B = mat(s + "B_proj.weight", hs * N, d);
    w.C = mat(s + "C_proj.weight", hs * N, d);
    if (o.bias) {
      w.x_b = vec(s + "x_proj.bias", {hs * P});
      w.B_b = vec(s + "B_proj.bias", {hs * N});
      w.C_b = vec(s + "C_proj.bias", {hs * N});
    }
    w.a = mat(s + "a_proj.weight", hs, d);
    w.a_b = vec(s + "a_proj.bias", {hs});
    w.D = vec(s + "D", {hs});
    if (o.conv) w.conv = vec(s + "conv_weight", {hs * (P + 2 * N), o.conv_width});
    if (o.gate) {
      w.z = mat(s + "z_proj.weight", hs * P, d);
      w.z_b = vec(s + "z_proj.bias", {hs * P});
    }
  }
  const std::string mp = p + "mlp.";
  w.gate = mat(mp + "gate_proj.weight", c.d_ff, d);
  w.up = mat(mp + "up_proj.weight", c.d_ff, d);
  w.down = mat(mp + "down_proj.weight", d, c.d_ff);
  if (c.mlp_bias) {
    w.gate_b = vec(mp + "gate_proj.bias", {c.d_ff});
    w.up_b = vec(mp + "up_proj.bias", {c.d_ff});
    w.down_b = vec(mp + "down_proj.bias", {d});
  }
  m_->layers_.push_back(std::move(w));
}

std::string Model::weight_dtypes() const {
  std::string s;
  for (const auto& d : dtypes_seen_) s += (s.empty() ? "" : "+") + d;
  return s;
}

int64_t cache_type_bytes(CacheType t) { return t == CacheType::kF16 ? 2 : 4; }
const char* cache_type_name(CacheType t) { return t == CacheType::kF16 ? "f16" : "f32"; }

CacheType parse_cache_type(const std::string& value, const std::string& flag) {
  if (value == "f32") return CacheType::kF32;
  if (value == "f16") return CacheType::kF16;
  fail("{}: unknown K/V cache type '{}' (allowed: f32, f16; f16 is llama.cpp's default, its -ctk/-ctv f16)", flag,
       value);
}

int64_t Model::cache_bytes(int64_t length, CacheType kv) const {
  const int64_t kv_len = config_.sliding_window > 0 ? std::min(length, config_.sliding_window) : length;
  const int64_t P = config_.d_head, N = ssm_.d_state;
  int64_t bytes = 0;
  for (const auto& w : layers_) {
    bytes += w.ng() * 2 * config_.d_head * kv_len * cache_type_bytes(kv);
    bytes += w.hs() * P * N * 4;
    if (ssm_.conv) bytes += w.hs() * (P + 2 * N) * (ssm_.conv_width - 1) * 4;
  }
  return bytes;
}

// ---------------------------------------------------------------- session

namespace {

// HF RMSNorm in float32: w * (x / sqrt(mean(x^2) + eps)).
void rms_norm(const float* x, const float* w, float* out, int64_t d, double eps) {
  double ss = 0;
  for (int64_t i = 0; i < d; ++i) ss += static_cast<double>(x[i]) * x[i];
  const float r = 1.0f / std::sqrt(static_cast<float>(ss / d) + static_cast<float>(eps));
  for (int64_t i = 0; i < d; ++i) out[i] = w[i] * (x[i] * r);
}

// HF rotate_half RoPE on one head vector [Dh] (pairs i and i + Dh/2).
void rope(float* v, const float* cos, const float* sin, int64_t half) {
  for (int64_t i = 0; i < half; ++i) {
    const float x1 = v[i], x2 = v[i + half];
    v[i] = x1 * cos[i] - x2 * sin[i];
    v[i + half] = x2 * cos[i] + x1 * sin[i];
  }
}

inline float silu(float x) { return x / (1.0f + std::exp(-x)); }
inline float softplus(float x) { return x > 20.0f ? x : std::log1p(std::exp(x)); }  // torch's threshold 20

struct MatJob {
  const Mat* W;
  const float* bias;
  float* y;
  int64_t ldy;
};

// All jobs share the input x [T, ldx]; their rows are cut into blocks that the pool's threads
// take in turn (a thread the OS has descheduled does not hold up the others). Decode (T = 1) takes
// 64 rows a block: one long run of memory per block for the prefetchers (the kernel prefetches
// ahead within it), and 256 bytes of y, so two threads share at most the cache line at a block's
// edge, written once per block. Prefill keeps 16-row blocks (its tiles are compute-bound).
constexpr int64_t kRowBlock = 16, kDecodeRowBlock = 64;

void matmul_jobs(ThreadPool& pool, const MatJob* jobs, int n_jobs, const float* x, int64_t ldx, int64_t T,
                 bool accumulate) {
  const int64_t block = T == 1 ? kDecodeRowBlock : kRowBlock;
  int64_t first_block[9] = {0};
  bool any_blocks = false, any_sums = false;
  for (int j = 0; j < n_jobs; ++j) {
    first_block[j + 1] = first_block[j] + (jobs[j].W->rows + block - 1) / block;
    any_blocks = any_blocks || dtype_is_block(jobs[j].W->dtype);
    any_sums = any_sums || detail::dtype_is_subblock(jobs[j].W->dtype);
  }
  // Block-type weights read x quantised to 8 bits: once here, not once per block of rows. The buffer
  // is this (calling) thread's; the pool's threads reach it through `xq`, a reference captured by the
  // lambda (naming the thread_local inside the lambda would give each thread its own, empty, copy).
  thread_local detail::QuantizedActivations caller_xq;
  detail::QuantizedActivations& xq = caller_xq;
  if (any_blocks) xq.quantize(x, ldx, T, jobs[0].W->cols, active_isa() == Isa::kAvx2, any_sums);
  auto f = [&](int64_t b, int) {
    int j = 0;
    while (b >= first_block[j + 1]) ++j;
    const int64_t r0 = (b - first_block[j]) * block, r1 = std::min(jobs[j].W->rows, r0 + block);
    if (dtype_is_block(jobs[j].W->dtype))
      matmul_quantized(*jobs[j].W, jobs[j].bias, xq, jobs[j].y, jobs[j].ldy, r0, r1, accumulate);
    else
      matmul(*jobs[j].W, jobs[j].bias, x, ldx, T, jobs[j].y, jobs[j].ldy, r0, r1, accumulate);
  };
  pool.for_blocks(first_block[n_jobs], f);
}

const float* or_null(const std::vector<float>& v) { return v.empty() ? nullptr : v.data(); }

// Where the mixer's input projections of `rows` rows go (row-major, one row per token or session).
struct ProjectionOut {
  float *q, *k, *v;             // kept heads: [rows, nk * Dh], [rows, ng * Dh] x 2
  float *x, *B, *C, *a, *z;     // SSM heads: [rows, Hs * P], [rows, Hs * N] x 2, [rows, Hs], gate [rows, Hs * P]
};

// Step 1 of a layer, shared by Session (a prefill chunk: rows = tokens) and BatchDecoder (rows =
// sessions): the input RMSNorm of x into xn, then every projection of the mixer in one parallel pass
// (each weight row read once for all rows).
void mixer_input_projections(ThreadPool& pool, const ModelConfig& c, const LayerWeights& w, const SsmOptions& so,
                             const float* x, float* xn, int64_t rows, const ProjectionOut& out) {
  const int64_t d = c.d_model, Dh = c.d_head, P = Dh, N = so.d_state;
  const int64_t nk = w.nk(), ng = w.ng(), hs = w.hs();
  for (int64_t r = 0; r < rows; ++r) rms_norm(x + r * d, w.input_norm.data(), xn + r * d, d, c.rms_norm_eps);
  MatJob jobs[8];
  int nj = 0;
  if (nk > 0) {
    jobs[nj++] = {&w.q, or_null(w.q_b), out.q, nk * Dh};
    jobs[nj++] = {&w.k, or_null(w.k_b), out.k, ng * Dh};
    jobs[nj++] = {&w.v, or_null(w.v_b), out.v, ng * Dh};
  }
  if (hs > 0) {
    jobs[nj++] = {&w.x, or_null(w.x_b), out.x, hs * P};
    jobs[nj++] = {&w.B, or_null(w.B_b), out.B, hs * N};
    jobs[nj++] = {&w.C, or_null(w.C_b), out.C, hs * N};
    jobs[nj++] = {&w.a, or_null(w.a_b), out.a, hs};
    if (so.gate) jobs[nj++] = {&w.z, or_null(w.z_b), out.z, hs * P};
  }
  matmul_jobs(pool, jobs, nj, xn, d, rows, false);
}

// Steps 3-4 of a layer, shared the same way: o_proj over all heads' outputs `heads` [rows, H * Dh]
// (the teacher's head order) added to the residual x, then x += down(silu(gate(n)) * up(n)) with
// n = RMSNorm(x) in xn; g and u are [rows, d_ff] scratch.
void output_and_mlp(ThreadPool& pool, const ModelConfig& c, const LayerWeights& w, const float* heads, float* x,
                    float* xn, float* g, float* u, int64_t rows) {
  const int64_t d = c.d_model;
  MatJob o{&w.o, or_null(w.o_b), x, d};
  matmul_jobs(pool, &o, 1, heads, c.n_head * c.d_head, rows, true);
  for (int64_t r = 0; r < rows; ++r) rms_norm(x + r * d, w.post_norm.data(), xn + r * d, d, c.rms_norm_eps);
  MatJob gu[2] = {{&w.gate, or_null(w.gate_b), g, c.d_ff}, {&w.up, or_null(w.up_b), u, c.d_ff}};
  matmul_jobs(pool, gu, 2, xn, d, rows, false);
  for (int64_t i = 0, n = rows * c.d_ff; i < n; ++i) g[i] = silu(g[i]) * u[i];
  MatJob down{&w.down, or_null(w.down_b), x, d};
  matmul_jobs(pool, &down, 1, g, c.d_ff, rows, true);
}

// One token through SSM head i (its index among the layer's SSM heads): the depthwise causal conv
// on its x/B/C channels in place (when configured; `conv_state` is the layer's), the recurrence on
// its state S [P, N], the D skip and the gate (z: its gate pre-activations [P], null without one).
// y: the head's output [P]. Session (prefill and step) and BatchDecoder share it, so their numbers
// are the same.
void ssm_head_token(const LayerWeights& w, const SsmOptions& so, int64_t i, int64_t P, int64_t N, float* S,
                    float* conv_state, float* xs, float* Bs, float* Cs, float a, const float* z, float* y) {
  const int64_t hs = w.hs();
  if (so.conv) {
    const int64_t Wc = so.conv_width;
    // Depthwise causal conv; channel order [x (Hs*P) | B (Hs*N) | C (Hs*N)] as the checkpoint.
    auto conv_channel = [&](int64_t ch, float* v) {
      const float* wc = w.conv.data() + ch * Wc;
      float* hist = conv_state + ch * (Wc - 1);  // oldest first
      float acc = Wc > 1 ? hist[0] * wc[0] : 0.0f;
      for (int64_t k = 1; k < Wc - 1; ++k) acc = acc + hist[k] * wc[k];
      acc = Wc > 1 ? acc + *v * wc[Wc - 1] : *v * wc[0];
      for (int64_t k = 0; k + 1 < Wc - 1; ++k) hist[k] = hist[k + 1];
      if (Wc > 1) hist[Wc - 2] = *v;
      *v = acc;
    };
    for (int64_t p = 0; p < P; ++p) conv_channel(i * P + p, xs + p);
    for (int64_t n = 0; n < N; ++n) conv_channel(hs * P + i * N + n, Bs + n);
    for (int64_t n = 0; n < N; ++n) conv_channel(hs * P + hs * N + i * N + n, Cs + n);
  }
  const float alpha = std::exp(-softplus(a));
  if (so.input_step) {
    // The state takes (1 - alpha) x (an exponential moving average); the D skip the unscaled x.
    const float step = -std::expm1(-softplus(a));
    float xin[kMaxSsmHeadDim];  // P <= kMaxSsmHeadDim is checked when the weights load
    for (int64_t p = 0; p < P; ++p) xin[p] = step * xs[p];
    ssm_step(S, P, N, alpha, xin, Bs, Cs, y);
  } else {
    ssm_step(S, P, N, alpha, xs, Bs, Cs, y);
  }
  for (int64_t p = 0; p < P; ++p) y[p] = y[p] + w.D[i] * xs[p];
  if (z != nullptr)
    for (int64_t p = 0; p < P; ++p) y[p] *= silu(z[p]);
}

// A contiguous run of n keys/values, one every `ld` elements: floats, or f16 when `f16`.
struct KvRun {
  int64_t n;
  const void *k, *v;
  int64_t ld;
  bool f16 = false;
};

// The cached positions [from, to) of KV group g (index among the layer's kept groups) as up to two
// runs of the ring (before and after its wrap point), appended to `runs`; returns their number.
template <typename State>
int ring_runs(State& st, int64_t g, int64_t cap, int64_t Dh, int64_t from, int64_t to, KvRun* runs) {
  int nr = 0;
  const bool f16 = !st.kh.empty();
  for (int64_t s = from; s < to;) {
    const int64_t slot = s % cap, len = std::min(to - s, cap - slot), off = (g * cap + slot) * Dh;
    if (f16)
      runs[nr++] = {len, st.kh.data() + off, st.vh.data() + off, Dh, true};
    else
      runs[nr++] = {len, st.k.data() + off, st.v.data() + off, Dh, false};
    s += len;
  }
  return nr;
}

// Position `slot` of KV group g's ring <- the token's k, v [Dh] (floats; converted when the
// cache is f16 - exact when they were rounded to f16 already).
template <typename State>
void ring_write(State& st, int64_t g, int64_t cap, int64_t Dh, int64_t slot, const float* k, const float* v) {
  const int64_t off = (g * cap + slot) * Dh;
  if (!st.kh.empty()) {
    f32_to_f16(k, st.kh.data() + off, Dh);
    f32_to_f16(v, st.vh.data() + off, Dh);
  } else {
    std::memcpy(st.k.data() + off, k, Dh * sizeof(float));
    std::memcpy(st.v.data() + off, v, Dh * sizeof(float));
  }
}

// Queries that share one KV group against its n_s keys/values in position order, split over `nr`
// runs: scaled scores, softmax, weighted sum into outs[h] [Dh]. Keys and values are visited in
// blocks that stay in L1 while every query of the group uses them, so a group's K/V is read from
// memory once per token rather than once per head (GQA teachers at long context are bound by those
// reads). Per query the order of operations is that of one query alone: results do not depend on
// how many heads share the pass. scores: nh * n_s floats of scratch.
constexpr int kMaxGroupHeads = 8;   // queries per pass (more heads in a group: several passes)
constexpr int64_t kKvBlock = 256;   // keys per block: 256 x head dim x 4 bytes fits L1 for Dh <= 32

void attend_group(const float* const* qs, float* const* outs, int nh, const KvRun* runs, int nr, int64_t n_s,
                  int64_t Dh, float sqrt_d, float* scores) {
  int64_t off = 0;
  for (int r = 0; r < nr; ++r) {
    for (int64_t j0 = 0; j0 < runs[r].n; j0 += kKvBlock) {
      const int64_t nb = std::min(kKvBlock, runs[r].n - j0);
      for (int h = 0; h < nh; ++h) {
        float* out = scores + h * n_s + off + j0;
        if (runs[r].f16)
          attn_scores_f16(qs[h], static_cast<const uint16_t*>(runs[r].k) + j0 * runs[r].ld, runs[r].ld, nb, Dh,
                          sqrt_d, out);
        else
          attn_scores(qs[h], static_cast<const float*>(runs[r].k) + j0 * runs[r].ld, runs[r].ld, nb, Dh, sqrt_d,
                      out);
      }
    }
    off += runs[r].n;
  }
  for (int h = 0; h < nh; ++h) {
    softmax(scores + h * n_s, n_s);
    std::fill(outs[h], outs[h] + Dh, 0.0f);
  }
  off = 0;
  for (int r = 0; r < nr; ++r) {
    for (int64_t j0 = 0; j0 < runs[r].n; j0 += kKvBlock) {
      const int64_t nb = std::min(kKvBlock, runs[r].n - j0);
      for (int h = 0; h < nh; ++h) {
        const float* p = scores + h * n_s + off + j0;
        if (runs[r].f16)
          weighted_sum_f16(p, static_cast<const uint16_t*>(runs[r].v) + j0 * runs[r].ld, runs[r].ld, nb, Dh, outs[h]);
        else
          weighted_sum(p, static_cast<const float*>(runs[r].v) + j0 * runs[r].ld, runs[r].ld, nb, Dh, outs[h]);
      }
    }
    off += runs[r].n;
  }
}

// The most kept heads that share one KV group in any layer, capped at one pass's kMaxGroupHeads:
// the attention scratch holds that many score rows per thread.
int64_t group_heads(const Model& m) {
  int64_t most = 1;
  for (const auto& w : m.layers())
    for (int64_t g = 0; g < w.ng(); ++g)
      most = std::max<int64_t>(most, std::count(w.head_group.begin(), w.head_group.end(), g));
  return std::min<int64_t>(most, kMaxGroupHeads);
}

// Kept heads i of a layer with head_group[i] == g, in passes of at most max_heads: for each pass,
// attend_group on their queries (q_base + i * Dh) into their output rows (out_base + kept_heads[i] * Dh).
void attend_kept_group(const LayerWeights& w, int64_t g, int64_t max_heads, const float* q_base, float* out_base,
                       const KvRun* runs, int nr, int64_t n_s, int64_t Dh, float sqrt_d, float* scores) {
  const float* qs[kMaxGroupHeads];
  float* outs[kMaxGroupHeads];
  int nh = 0;
  for (int64_t i = 0; i < w.nk(); ++i) {
    if (w.head_group[i] != g) continue;
    qs[nh] = q_base + i * Dh;
    outs[nh] = out_base + w.kept_heads[i] * Dh;
    if (++nh == max_heads) {
      attend_group(qs, outs, nh, runs, nr, n_s, Dh, sqrt_d, scores);
      nh = 0;
    }
  }
  if (nh > 0) attend_group(qs, outs, nh, runs, nr, n_s, Dh, sqrt_d, scores);
}

}  // namespace

void ActivationScratch::size_for(const Model& model, int64_t rows) {
  const ModelConfig& c = model.config();
  const int64_t d = c.d_model, Dh = c.d_head, P = Dh, N = model.ssm().d_state;
  int64_t nk = 0, ng = 0, hs = 0;  // the widest layer's kept heads, KV groups and SSM heads
  for (const auto& w : model.layers()) {
    nk = std::max(nk, w.nk());
    ng = std::max(ng, w.ng());
    hs = std::max(hs, w.hs());
  }
  const size_t T = static_cast<size_t>(rows);
  x.resize(T * d);
  xn.resize(T * d);
  q.resize(T * nk * Dh);
  k.resize(T * ng * Dh);
  v.resize(T * ng * Dh);
  sx.resize(T * hs * P);
  sB.resize(T * hs * N);
  sC.resize(T * hs * N);
  sa.resize(T * hs);
  if (model.ssm().gate) sz.resize(T * hs * P);
  heads.resize(T * c.n_head * Dh);
  g.resize(T * c.d_ff);
  u.resize(T * c.d_ff);
  cos.resize(T * Dh / 2);
  sin.resize(T * Dh / 2);
}

Session::Session(std::shared_ptr<const Model> model, const SessionOptions& o)
    : model_(std::move(model)), pool_(o.threads), cache_type_(o.cache_type) {
  const ModelConfig& c = model_->config();
  n_ctx_ = o.n_ctx > 0 ? o.n_ctx : c.max_position_embeddings;
  RAD_CHECK(n_ctx_ >= 1, "runtime: context length must be >= 1, got {}", n_ctx_);
  kv_cap_ = c.sliding_window > 0 ? std::min(n_ctx_, c.sliding_window) : n_ctx_;
  chunk_ = std::max<int64_t>(1, std::min(o.prefill_chunk, n_ctx_));
  const int64_t Dh = c.d_head, P = Dh, N = model_->ssm().d_state;
  const SsmOptions& so = model_->ssm();
  for (const auto& w : model_->layers()) {
    LayerState s;
    const size_t kv = static_cast<size_t>(w.ng() * kv_cap_ * Dh);
    if (cache_type_ == CacheType::kF16) {
      s.kh.resize(kv);
      s.vh.resize(kv);
    } else {
      s.k.resize(kv);
      s.v.resize(kv);
    }
    s.ssm.resize(static_cast<size_t>(w.hs() * P * N));
    if (so.conv) s.conv.resize(static_cast<size_t>(w.hs() * (P + 2 * N) * (so.conv_width - 1)));
    state_.push_back(std::move(s));
  }
  a_.size_for(*model_, chunk_);
  logits_.resize(c.n_vocab);
  group_heads_ = group_heads(*model_);
  scores_.resize(static_cast<size_t>(pool_.size() * group_heads_) * (kv_cap_ + chunk_));
}

Session::~Session() = default;

void Session::reset() {
  length_ = 0;
  for (auto& s : state_) {
    std::fill(s.ssm.begin(), s.ssm.end(), 0.0f);
    std::fill(s.conv.begin(), s.conv.end(), 0.0f);
  }
}

CacheBytes Session::cache_bytes() const {
  CacheBytes b;
  const int64_t Dh = model_->config().d_head, used = std::min(length_, kv_cap_);
  for (size_t l = 0; l < state_.size(); ++l) {
    const int64_t ng = model_->layers()[l].ng();
    b.kv_allocated += static_cast<int64_t>((state_[l].k.size() + state_[l].v.size()) * sizeof(float) +
                                           (state_[l].kh.size() + state_[l].vh.size()) * sizeof(uint16_t));
    b.kv_used += ng * 2 * used * Dh * cache_type_bytes(cache_type_);
    b.ssm += static_cast<int64_t>((state_[l].ssm.size() + state_[l].conv.size()) * sizeof(float));
  }
  return b;
}

const float* Session::forward(const int64_t* tokens, int64_t n, float* all_logits) {
  const ModelConfig& c = model_->config();
  RAD_CHECK(n >= 1, "runtime: no tokens to process");
  RAD_CHECK(length_ + n <= n_ctx_,
            "runtime: {} new tokens after {} cached ones exceed the context of {} tokens (the prompt is too long for "
            "this session; the model's max_position_embeddings is {})",
            n, length_, n_ctx_, c.max_position_embeddings);
  for (int64_t i = 0; i < n; ++i)
    RAD_CHECK(tokens[i] >= 0 && tokens[i] < c.n_vocab, "runtime: token id {} at position {} is outside the vocabulary "
              "of {} tokens", tokens[i], i, c.n_vocab);
  for (int64_t i = 0; i < n; i += chunk_) {
    const int64_t T = std::min(chunk_, n - i);
    run_chunk(tokens + i, T, all_logits != nullptr ? all_logits + i * c.n_vocab : nullptr);
  }
  return logits_.data();
}

void Session::run_chunk(const int64_t* tokens, int64_t T, float* all_logits) {
  const ModelConfig& c = model_->config();
  const int64_t d = c.d_model, half = c.d_head / 2, V = c.n_vocab;
  for (int64_t t = 0; t < T; ++t) {
    const Mat& E = model_->embed();
    to_f32(E.data + static_cast<size_t>(tokens[t]) * row_bytes(E.dtype, d), E.dtype, a_.x.data() + t * d, d);
    const float pos = static_cast<float>(length_ + t);
    for (int64_t i = 0; i < half; ++i) {
      const float f = pos * model_->inv_freq()[i];
      a_.cos[t * half + i] = std::cos(f);
      a_.sin[t * half + i] = std::sin(f);
    }
  }
  for (int64_t l = 0; l < c.n_layer; ++l) layer_forward(l, T);
  length_ += T;
  // Final norm + LM head: every token when asked for all logits, else the last one only.
  const int64_t first = all_logits != nullptr ? 0 : T - 1, nt = T - first;
  for (int64_t t = first; t < T; ++t)
    rms_norm(a_.x.data() + t * d, model_->final_norm().data(), a_.xn.data() + (t - first) * d, d, c.rms_norm_eps);
  MatJob job{&model_->lm_head(), nullptr, all_logits != nullptr ? all_logits : logits_.data(), V};
  matmul_jobs(pool_, &job, 1, a_.xn.data(), d, nt, false);
  if (all_logits != nullptr) std::memcpy(logits_.data(), all_logits + (T - 1) * V, V * sizeof(float));
}

void Session::layer_forward(int64_t l, int64_t T) {
  const ModelConfig& c = model_->config();
  const LayerWeights& w = model_->layers()[l];
  LayerState& st = state_[l];
  const SsmOptions& so = model_->ssm();
  const int64_t Dh = c.d_head, half = Dh / 2, H = c.n_head, P = Dh, N = so.d_state;
  const int64_t nk = w.nk(), ng = w.ng(), hs = w.hs(), past = length_;

  // 1. Norm and every projection of the mixer input, in one parallel pass.
  mixer_input_projections(pool_, c, w, so, a_.x.data(), a_.xn.data(), T,
                          {a_.q.data(), a_.k.data(), a_.v.data(), a_.sx.data(), a_.sB.data(), a_.sC.data(), a_.sa.data(), a_.sz.data()});
  for (int64_t t = 0; t < T; ++t) {
    const float *cs = a_.cos.data() + t * half, *sn = a_.sin.data() + t * half;
    for (int64_t i = 0; i < nk; ++i) rope(a_.q.data() + (t * nk + i) * Dh, cs, sn, half);
    for (int64_t g = 0; g < ng; ++g) rope(a_.k.data() + (t * ng + g) * Dh, cs, sn, half);
  }
  // An f16 cache: the chunk's K/V rounded now, so its own tokens attend to exactly what the ring
  // will hold for them (prefill in chunks = token by token = BatchDecoder).
  if (cache_type_ == CacheType::kF16 && ng > 0) {
    round_to_f16(a_.k.data(), T * ng * Dh);
    round_to_f16(a_.v.data(), T * ng * Dh);
  }

  // 2. Kept heads (one task per token and KV group: the group's heads share each read of its K/V)
  // and SSM heads (one task per head, all tokens in order), scheduled dynamically; SSM tasks first
  // since they are the longest.
  const int64_t W = c.sliding_window, cap = kv_cap_, scores_stride = group_heads_ * (kv_cap_ + chunk_);
  const float sqrt_d = static_cast<float>(std::sqrt(static_cast<double>(Dh)));
  const int64_t n_tasks = hs + T * ng;
  auto f = [&](int64_t task, int tid) {
    float* scores = scores_.data() + tid * scores_stride;
    if (task < hs) {
      const int64_t i = task;
      float* S = st.ssm.data() + i * P * N;
      for (int64_t t = 0; t < T; ++t)
        ssm_head_token(w, so, i, P, N, S, st.conv.data(), a_.sx.data() + t * hs * P + i * P,
                       a_.sB.data() + t * hs * N + i * N, a_.sC.data() + t * hs * N + i * N, a_.sa[t * hs + i],
                       so.gate ? a_.sz.data() + t * hs * P + i * P : nullptr,
                       a_.heads.data() + (t * H + w.ssm_heads[i]) * Dh);
      return;
    }
    const int64_t t = (task - hs) / ng, g = (task - hs) % ng;
    const int64_t pos = past + t, lo = W > 0 ? std::max<int64_t>(0, pos - W + 1) : 0, n_s = pos - lo + 1;
    // Positions [lo, pos] in up to three contiguous runs: the cache ring before and after its wrap
    // point (positions before this chunk), then the chunk's own keys in the scratch.
    KvRun runs[3];
    int nr = ring_runs(st, g, cap, Dh, lo, std::min(pos + 1, past), runs);
    if (pos >= past) {
      const int64_t s0 = std::max(lo, past);
      runs[nr++] = {pos - s0 + 1, a_.k.data() + ((s0 - past) * ng + g) * Dh, a_.v.data() + ((s0 - past) * ng + g) * Dh,
                    ng * Dh};
    }
    attend_kept_group(w, g, group_heads_, a_.q.data() + t * nk * Dh, a_.heads.data() + t * H * Dh, runs, nr, n_s, Dh,
                      sqrt_d, scores);
  };
  pool_.for_blocks(n_tasks, f);
  // The chunk's K/V into the cache (only the last `cap` positions matter with a window).
  for (int64_t t = std::max<int64_t>(0, T - cap); t < T; ++t) {
    const int64_t slot = (past + t) % cap;
    for (int64_t g = 0; g < ng; ++g)
      ring_write(st, g, cap, Dh, slot, a_.k.data() + (t * ng + g) * Dh, a_.v.data() + (t * ng + g) * Dh);
  }

  // 3-4. o_proj over all heads in the teacher's order, added to the residual; then the MLP.
  output_and_mlp(pool_, c, w, a_.heads.data(), a_.x.data(), a_.xn.data(), a_.g.data(), a_.u.data(), T);
}

// ---------------------------------------------------------------- batched decode

BatchDecoder::BatchDecoder(std::shared_ptr<const Model> model, const BatchDecoderOptions& o)
    : model_(std::move(model)), pool_(o.threads) {
  RAD_CHECK(model_ != nullptr, "runtime: BatchDecoder needs a model");
  group_heads_ = group_heads(*model_);
}

BatchDecoder::~BatchDecoder() = default;

void BatchDecoder::reserve(int64_t max_batch, int64_t max_kv) {
  const ModelConfig& c = model_->config();
  if (max_batch > cap_b_) {
    a_.size_for(*model_, max_batch);
    logits_.resize(static_cast<size_t>(max_batch * c.n_vocab));
    cap_b_ = max_batch;
  }
  if (max_kv > cap_kv_) {
    scores_.resize(static_cast<size_t>(pool_.size() * group_heads_) * max_kv);
    cap_kv_ = max_kv;
  }
}

const float* BatchDecoder::step(Session* const* sessions, const int64_t* tokens, int64_t B) {
  const ModelConfig& c = model_->config();
  RAD_CHECK(B >= 1, "runtime: a batched decode step needs at least one session, got {}", B);
  // Every check before any state changes, so a refused batch leaves all its sessions as they were.
  int64_t max_kv = 0;
  for (int64_t b = 0; b < B; ++b) {
    const Session* s = sessions[b];
    RAD_CHECK(s != nullptr, "runtime: batch entry {} has no session", b);
    RAD_CHECK(&s->model() == model_.get(),
              "runtime: batch entry {} is a session of another model ({}); a BatchDecoder steps sessions of {} only",
              b, s->model().dir(), model_->dir());
    for (int64_t j = 0; j < b; ++j)
      RAD_CHECK(sessions[j] != s, "runtime: batch entries {} and {} are the same session (one token per session and step)",
                j, b);
    RAD_CHECK(s->length_ + 1 <= s->n_ctx_,
              "runtime: batch entry {}: 1 new token after {} cached ones exceeds the context of {} tokens", b,
              s->length_, s->n_ctx_);
    RAD_CHECK(tokens[b] >= 0 && tokens[b] < c.n_vocab,
              "runtime: batch entry {}: token id {} is outside the vocabulary of {} tokens", b, tokens[b], c.n_vocab);
    max_kv = std::max(max_kv, s->kv_cap_);
  }
  reserve(B, max_kv);
  const int64_t d = c.d_model, half = c.d_head / 2, V = c.n_vocab;
  for (int64_t b = 0; b < B; ++b) {
    const Mat& E = model_->embed();
    to_f32(E.data + static_cast<size_t>(tokens[b]) * row_bytes(E.dtype, d), E.dtype, a_.x.data() + b * d, d);
    const float pos = static_cast<float>(sessions[b]->length_);
    for (int64_t i = 0; i < half; ++i) {
      const float f = pos * model_->inv_freq()[i];
      a_.cos[b * half + i] = std::cos(f);
      a_.sin[b * half + i] = std::sin(f);
    }
  }
  for (int64_t l = 0; l < c.n_layer; ++l) layer(l, sessions, B);
  for (int64_t b = 0; b < B; ++b) {
    rms_norm(a_.x.data() + b * d, model_->final_norm().data(), a_.xn.data() + b * d, d, c.rms_norm_eps);
    ++sessions[b]->length_;
  }
  MatJob job{&model_->lm_head(), nullptr, logits_.data(), V};  // [B, V]: the LM head read once for all rows
  matmul_jobs(pool_, &job, 1, a_.xn.data(), d, B, false);
  return logits_.data();
}

// Session::layer_forward with the batch's rows in place of a chunk's tokens: row b is one token of
// sessions[b], at position sessions[b]->length_, against that session's caches.
void BatchDecoder::layer(int64_t l, Session* const* sessions, int64_t B) {
  const ModelConfig& c = model_->config();
  const LayerWeights& w = model_->layers()[l];
  const SsmOptions& so = model_->ssm();
  const int64_t Dh = c.d_head, half = Dh / 2, H = c.n_head, P = Dh, N = so.d_state;
  const int64_t nk = w.nk(), ng = w.ng(), hs = w.hs();

  // 1. Norm and every projection, one matmul over the B rows.
  mixer_input_projections(pool_, c, w, so, a_.x.data(), a_.xn.data(), B,
                          {a_.q.data(), a_.k.data(), a_.v.data(), a_.sx.data(), a_.sB.data(), a_.sC.data(), a_.sa.data(), a_.sz.data()});
  // RoPE, then each row's K/V into its session's ring. Written before attention (unlike a prefill
  // chunk, one token per session cannot overwrite a position it still needs): the slot it takes
  // held position length - kv_cap, outside the window, or nothing.
  for (int64_t b = 0; b < B; ++b) {
    const float *cs = a_.cos.data() + b * half, *sn = a_.sin.data() + b * half;
    for (int64_t i = 0; i < nk; ++i) rope(a_.q.data() + (b * nk + i) * Dh, cs, sn, half);
    for (int64_t g = 0; g < ng; ++g) rope(a_.k.data() + (b * ng + g) * Dh, cs, sn, half);
    Session::LayerState& st = sessions[b]->state_[l];
    const int64_t cap = sessions[b]->kv_cap_, slot = sessions[b]->length_ % cap;
    for (int64_t g = 0; g < ng; ++g)
      ring_write(st, g, cap, Dh, slot, a_.k.data() + (b * ng + g) * Dh, a_.v.data() + (b * ng + g) * Dh);
  }

  // 2. SSM heads (one task per session and head) and kept heads (one per session and KV group, the
  // group's heads sharing each read of its K/V), each against its own session's state.
  const int64_t W = c.sliding_window;
  const float sqrt_d = static_cast<float>(std::sqrt(static_cast<double>(Dh)));
  const int64_t n_ssm = B * hs, n_tasks = n_ssm + B * ng;
  auto f = [&](int64_t task, int tid) {
    if (task < n_ssm) {
      const int64_t b = task / hs, i = task % hs;
      Session::LayerState& st = sessions[b]->state_[l];
      ssm_head_token(w, so, i, P, N, st.ssm.data() + i * P * N, st.conv.data(), a_.sx.data() + b * hs * P + i * P,
                     a_.sB.data() + b * hs * N + i * N, a_.sC.data() + b * hs * N + i * N, a_.sa[b * hs + i],
                     so.gate ? a_.sz.data() + b * hs * P + i * P : nullptr,
                     a_.heads.data() + (b * H + w.ssm_heads[i]) * Dh);
    } else {
      const int64_t b = (task - n_ssm) / ng, g = (task - n_ssm) % ng;
      const Session& s = *sessions[b];
      const int64_t pos = s.length_, lo = W > 0 ? std::max<int64_t>(0, pos - W + 1) : 0, n_s = pos - lo + 1;
      KvRun runs[2];
      const int nr = ring_runs(s.state_[l], g, s.kv_cap_, Dh, lo, pos + 1, runs);
      attend_kept_group(w, g, group_heads_, a_.q.data() + b * nk * Dh, a_.heads.data() + b * H * Dh, runs, nr, n_s, Dh,
                        sqrt_d, scores_.data() + tid * group_heads_ * cap_kv_);
    }
  };
  pool_.for_blocks(n_tasks, f);

  // 3-4. o_proj over all heads in the teacher's order, added to the residual; then the MLP.
  output_and_mlp(pool_, c, w, a_.heads.data(), a_.x.data(), a_.xn.data(), a_.g.data(), a_.u.data(), B);
}

}  // namespace rad::runtime
