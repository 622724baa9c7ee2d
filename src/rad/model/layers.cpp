#include "rad/model/layers.h"

#include <ATen/Parallel.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/nn/functional/activation.h>

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "rad/core/error.h"
#include "rad/runtime/kernels.h"

namespace rad {

RMSNormImpl::RMSNormImpl(int64_t dim, double eps_) : eps(eps_) {
  weight = register_parameter("weight", at::ones({dim}));
}

at::Tensor RMSNormImpl::forward(const at::Tensor& x) {
  at::Tensor h = x.to(at::kFloat);
  at::Tensor variance = h.pow(2).mean(-1, /*keepdim=*/true);
  h = h * at::rsqrt(variance + eps);
  return weight * h.to(x.scalar_type());
}

MLPImpl::MLPImpl(const ModelConfig& c) {
  auto opts = [&](int64_t in, int64_t out) { return torch::nn::LinearOptions(in, out).bias(c.mlp_bias); };
  gate_proj = register_module("gate_proj", torch::nn::Linear(opts(c.d_model, c.d_ff)));
  up_proj = register_module("up_proj", torch::nn::Linear(opts(c.d_model, c.d_ff)));
  down_proj = register_module("down_proj", torch::nn::Linear(opts(c.d_ff, c.d_model)));
}

at::Tensor MLPImpl::forward(const at::Tensor& x) {
  return down_proj->forward(at::silu(gate_proj->forward(x)) * up_proj->forward(x));
}

int64_t AttentionCache::bytes() const {
  int64_t total = 0;
  if (k.defined()) total += k.numel() * k.element_size();
  if (v.defined()) total += v.numel() * v.element_size();
  return total;
}

Attention::Attention(const ModelConfig& c) : n_head(c.n_head), n_head_kv(c.n_head_kv), d_head(c.d_head) {
  auto opts = [](int64_t in, int64_t out, bool bias) { return torch::nn::LinearOptions(in, out).bias(bias); };
  q_proj = register_module("q_proj", torch::nn::Linear(opts(c.d_model, c.n_head * c.d_head, c.qkv_bias)));
  k_proj = register_module("k_proj", torch::nn::Linear(opts(c.d_model, c.n_head_kv * c.d_head, c.qkv_bias)));
  v_proj = register_module("v_proj", torch::nn::Linear(opts(c.d_model, c.n_head_kv * c.d_head, c.qkv_bias)));
  o_proj = register_module("o_proj", torch::nn::Linear(opts(c.n_head * c.d_head, c.d_model, c.o_bias)));
}

std::unique_ptr<LayerCache> Attention::new_cache() const { return std::make_unique<AttentionCache>(); }

namespace {

// Fused causal attention for float32 CPU tensors (forward and backward). Written by hand because
// libtorch 1.13 (no MKL) computes the masked scores as a full T x S matmul, masks them, soft-maxes
// them and multiplies again, one matmul per batch slice; here query rows go in blocks of kRowBlock,
// each block multiplies (OpenBLAS sgemm) only against the keys its rows' masks allow (for causal
// masks, the lower half plus one diagonal tile), and nothing of size T x S is kept for the
// backward: the probabilities are recomputed there, bit for bit as in the forward. Rows of the
// mask must allow a contiguous range of keys (causal, sliding window) - other masks take the
// reference path. Blocks rather than one row at a time because with head dims of 8-64 a per-key
// dot product is mostly loop overhead; sgemm keeps the vector units busy.
struct FusedAttention {
  static constexpr int64_t kRowBlock = 32;
  int64_t B, T, S, H, Hkv, G, D;
  float div;
  const float *q, *k, *v;              // [B,T,H,D], [B,Hkv,S,D] x2
  const int64_t *lo, *hi;              // allowed keys of query row t: [lo[t], hi[t])
  const float* gout;                   // backward: the gradient of the output
  float *gq, *gk, *gv;

  int64_t n_blocks() const { return (T + kRowBlock - 1) / kRowBlock; }
  int64_t q_offset(int64_t b, int64_t t, int64_t h) const { return ((b * T + t) * H + h) * D; }
  int64_t kv_offset(int64_t b, int64_t j) const { return (b * Hkv + j) * S * D; }

  // The keys any row of block [t0, t1) may see: [u0, u1).
  void key_span(int64_t t0, int64_t t1, int64_t& u0, int64_t& u1) const {
    u0 = S, u1 = 0;
    for (int64_t t = t0; t < t1; ++t)
      if (hi[t] > lo[t]) u0 = std::min(u0, lo[t]), u1 = std::max(u1, hi[t]);
  }

  // p [t1 - t0, u1 - u0]: row t holds the softmax of query (b, t, h)'s scaled scores over its
  // allowed keys and 0 elsewhere.
  void probabilities(int64_t b, int64_t h, int64_t t0, int64_t t1, int64_t u0, int64_t u1, float* p) const {
    const int64_t m = t1 - t0, n = u1 - u0;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, D, 1.0f / div, q + q_offset(b, t0, h), H * D,
                k + kv_offset(b, h / G) + u0 * D, D, 0.0f, p, n);
    for (int64_t r = 0; r < m; ++r) {
      float* row = p + r * n;
      const int64_t a = std::max(lo[t0 + r], u0) - u0, e = std::min(hi[t0 + r], u1) - u0;
      if (e <= a) {
        std::fill(row, row + n, 0.0f);
        continue;
      }
      std::fill(row, row + a, 0.0f);
      std::fill(row + e, row + n, 0.0f);
      runtime::softmax(row + a, e - a);
    }
  }

  // One (batch, head, row block): out rows = p v.
  void forward_block(int64_t task, float* p, float* out) const {
    const int64_t blk = task % n_blocks(), h = (task / n_blocks()) % H, b = task / (n_blocks() * H);
    const int64_t t0 = blk * kRowBlock, t1 = std::min(T, t0 + kRowBlock);
    int64_t u0, u1;
    key_span(t0, t1, u0, u1);
    float* o = out + q_offset(b, t0, h);
    if (u1 <= u0) {
      for (int64_t t = t0; t < t1; ++t) std::fill(o + (t - t0) * H * D, o + (t - t0) * H * D + D, 0.0f);
      return;
    }
    probabilities(b, h, t0, t1, u0, u1, p);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, t1 - t0, D, u1 - u0, 1.0f, p, u1 - u0,
                v + kv_offset(b, h / G) + u0 * D, D, 0.0f, o, H * D);
  }

  // dp = dO v^T;  ds = p (dp - rowsum(p dp)) / div;  dq = ds k;  dk += ds^T q;  dv += p^T dO.
  // One (batch, KV group) per call, so its dk / dv have a single writer.
  void backward_group(int64_t bj, float* p, float* dp) const {
    const int64_t b = bj / Hkv, j = bj % Hkv;
    const float *kb = k + kv_offset(b, j), *vb = v + kv_offset(b, j);
    float *gkb = gk + kv_offset(b, j), *gvb = gv + kv_offset(b, j);
    std::fill(gkb, gkb + S * D, 0.0f);
    std::fill(gvb, gvb + S * D, 0.0f);
    for (int64_t h = j * G; h < (j + 1) * G; ++h)
      for (int64_t t0 = 0; t0 < T; t0 += kRowBlock) {
        const int64_t t1 = std::min(T, t0 + kRowBlock), m = t1 - t0;
        int64_t u0, u1;
        key_span(t0, t1, u0, u1);
        float* dq = gq + q_offset(b, t0, h);
        if (u1 <= u0) {
          for (int64_t r = 0; r < m; ++r) std::fill(dq + r * H * D, dq + r * H * D + D, 0.0f);
          continue;
        }
        const int64_t n = u1 - u0;
        const float *dO = gout + q_offset(b, t0, h), *qb = q + q_offset(b, t0, h);
        probabilities(b, h, t0, t1, u0, u1, p);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, D, 1.0f, dO, H * D, vb + u0 * D, D, 0.0f, dp, n);
        for (int64_t r = 0; r < m; ++r) {
          const float* pr = p + r * n;
          float* dr = dp + r * n;
          const float mean = runtime::dot(pr, dr, n);
          for (int64_t s = 0; s < n; ++s) dr[s] = pr[s] == 0.0f ? 0.0f : pr[s] * (dr[s] - mean) / div;
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, D, n, 1.0f, dp, n, kb + u0 * D, D, 0.0f, dq, H * D);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n, D, m, 1.0f, dp, n, qb, H * D, 1.0f, gkb + u0 * D, D);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n, D, m, 1.0f, p, n, dO, H * D, 1.0f, gvb + u0 * D, D);
      }
  }
};

struct FusedAttentionFunction : public torch::autograd::Function<FusedAttentionFunction> {
  static FusedAttention args(const at::Tensor& q, const at::Tensor& k, const at::Tensor& range) {
    FusedAttention a{};
    a.B = q.size(0), a.T = q.size(1), a.H = q.size(2), a.D = q.size(3), a.Hkv = k.size(1), a.S = k.size(2);
    a.G = a.H / a.Hkv, a.div = static_cast<float>(std::sqrt(static_cast<double>(a.D)));
    a.q = q.data_ptr<float>(), a.k = k.data_ptr<float>();
    a.lo = range.data_ptr<int64_t>(), a.hi = a.lo + a.T;
    return a;
  }

  // range [2, T]: each query row's allowed keys [lo, hi).
  static torch::autograd::variable_list forward(torch::autograd::AutogradContext* ctx, const at::Tensor& q_in,
                                                const at::Tensor& k_in, const at::Tensor& v_in,
                                                const at::Tensor& range) {
    at::Tensor q = q_in.contiguous(), k = k_in.contiguous(), v = v_in.contiguous();
    FusedAttention a = args(q, k, range);
    a.v = v.data_ptr<float>();
    at::Tensor out = at::empty_like(q);
    float* o = out.data_ptr<float>();
    at::parallel_for(0, a.B * a.H * a.n_blocks(), 1, [&](int64_t begin, int64_t end) {
      std::vector<float> p(FusedAttention::kRowBlock * std::max<int64_t>(a.S, 1));
      for (int64_t task = begin; task < end; ++task) a.forward_block(task, p.data(), o);
    });
    ctx->save_for_backward({q, k, v, range});
    return {out};
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grad_out) {
    auto saved = ctx->get_saved_variables();
    at::Tensor q = saved[0], k = saved[1], v = saved[2], range = saved[3];
    at::Tensor gout = grad_out[0].contiguous();
    FusedAttention a = args(q, k, range);
    a.v = v.data_ptr<float>(), a.gout = gout.data_ptr<float>();
    at::Tensor gq = at::empty_like(q), gk = at::empty_like(k), gv = at::empty_like(v);
    a.gq = gq.data_ptr<float>(), a.gk = gk.data_ptr<float>(), a.gv = gv.data_ptr<float>();
    at::parallel_for(0, a.B * a.Hkv, 1, [&](int64_t begin, int64_t end) {
      const int64_t size = FusedAttention::kRowBlock * std::max<int64_t>(a.S, 1);
      std::vector<float> p(size), dp(size);
      for (int64_t bj = begin; bj < end; ++bj) a.backward_group(bj, p.data(), dp.data());
    });
    return {gq, gk, gv, at::Tensor()};
  }
};

// [2, T] int64 (lo, hi) when every row of the [T, S] bool mask allows one contiguous range of keys;
// undefined otherwise.
at::Tensor mask_ranges(const at::Tensor& mask) {
  at::Tensor m = mask.to(at::kCPU).contiguous();
  const int64_t T = m.size(0), S = m.size(1);
  at::Tensor range = at::empty({2, T}, at::kLong);
  const bool* mp = m.data_ptr<bool>();
  int64_t *lo = range.data_ptr<int64_t>(), *hi = lo + T;
  for (int64_t t = 0; t < T; ++t) {
    const bool* row = mp + t * S;
    int64_t a = 0;
    while (a < S && !row[a]) ++a;
    int64_t b = a;
    while (b < S && row[b]) ++b;
    for (int64_t s = b; s < S; ++s)
      if (row[s]) return {};  // a second range: not for the fused kernel
    lo[t] = a, hi[t] = b;
  }
  return range;
}

}  // namespace

at::Tensor grouped_attention_reference(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                       const at::Tensor& mask) {
  const int64_t B = q.size(0), T = q.size(1), H = q.size(2), D = q.size(3);
  const int64_t Hkv = k.size(1), G = H / Hkv;
  // [B, T, H, D] -> [B, Hkv, G, T, D]: query heads of one KV group share its keys and values.
  at::Tensor qg = q.transpose(1, 2).reshape({B, Hkv, G, T, D});
  at::Tensor scores = at::matmul(qg, k.unsqueeze(2).transpose(-1, -2)) / std::sqrt(static_cast<double>(D));
  scores = scores.to(at::kFloat).masked_fill(mask.logical_not(), -std::numeric_limits<float>::infinity());
  at::Tensor probs = at::softmax(scores, -1).to(q.scalar_type());  // [B, Hkv, G, T, S]
  at::Tensor out = at::matmul(probs, v.unsqueeze(2));               // [B, Hkv, G, T, D]
  return out.reshape({B, H, T, D}).transpose(1, 2);                 // [B, T, H, D]
}

at::Tensor grouped_attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& mask) {
  const bool fused = q.device().is_cpu() && q.scalar_type() == at::kFloat && k.scalar_type() == at::kFloat &&
                     v.scalar_type() == at::kFloat && mask.dim() == 2 && mask.scalar_type() == at::kBool &&
                     mask.size(0) == q.size(1) && mask.size(1) == k.size(2) && k.size(1) > 0 &&
                     q.size(2) % k.size(1) == 0;
  if (fused) {
    at::Tensor range = mask_ranges(mask);
    if (range.defined()) return FusedAttentionFunction::apply(q, k, v, range)[0];
  }
  return grouped_attention_reference(q, k, v, mask);
}

at::Tensor Attention::forward(const at::Tensor& x, MixerContext& ctx) {
  const int64_t B = x.size(0), T = x.size(1);
  at::Tensor q = q_proj->forward(x).view({B, T, n_head, d_head});
  at::Tensor k = k_proj->forward(x).view({B, T, n_head_kv, d_head});
  at::Tensor v = v_proj->forward(x).view({B, T, n_head_kv, d_head});
  q = apply_rope(q, *ctx.rope);
  k = apply_rope(k, *ctx.rope).transpose(1, 2);  // [B, Hkv, T, D]
  v = v.transpose(1, 2);
  if (ctx.cache != nullptr) {
    auto* cache = static_cast<AttentionCache*>(ctx.cache);
    if (cache->k.defined()) {
      k = at::cat({cache->k, k}, 2);
      v = at::cat({cache->v, v}, 2);
    }
    cache->k = k;
    cache->v = v;
  }
  at::Tensor z = grouped_attention(q, k, v, *ctx.mask);  // [B, T, H, D]
  if (ctx.hooks != nullptr && ctx.hooks->head_output) z = ctx.hooks->head_output(ctx.layer, z);
  return o_proj->forward(z.reshape({B, T, n_head * d_head}));
}

DecoderLayerImpl::DecoderLayerImpl(const ModelConfig& c, std::shared_ptr<Mixer> mixer) {
  self_attn = register_module("self_attn", std::move(mixer));
  mlp = register_module("mlp", MLP(c));
  input_layernorm = register_module("input_layernorm", RMSNorm(c.d_model, c.rms_norm_eps));
  post_attention_layernorm = register_module("post_attention_layernorm", RMSNorm(c.d_model, c.rms_norm_eps));
}

at::Tensor DecoderLayerImpl::forward(const at::Tensor& x, MixerContext& ctx) {
  at::Tensor h = x + self_attn->forward(input_layernorm->forward(x), ctx);
  return h + mlp->forward(post_attention_layernorm->forward(h));
}

}  // namespace rad
