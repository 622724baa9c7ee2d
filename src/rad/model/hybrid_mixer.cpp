#include "rad/model/hybrid_mixer.h"

#include <map>

#include "rad/core/error.h"
#include "rad/model/ssm.h"

namespace rad {
namespace {
int64_t tensor_bytes(const at::Tensor& t) { return t.defined() ? t.numel() * t.element_size() : 0; }
}  // namespace

int64_t HybridCache::kv_bytes() const { return tensor_bytes(k) + tensor_bytes(v); }
int64_t HybridCache::ssm_bytes() const { return tensor_bytes(ssm_state) + tensor_bytes(conv_state); }
int64_t HybridCache::bytes() const { return kv_bytes() + ssm_bytes(); }

SsmHeadsImpl::SsmHeadsImpl(const ModelConfig& c, const SsmOptions& o, int64_t h)
    : n_heads(h), d_head(c.d_head), d_state(o.d_state), options(o) {
  auto lin = [&](int64_t out, bool bias) { return torch::nn::Linear(torch::nn::LinearOptions(c.d_model, out).bias(bias)); };
  x_proj = register_module("x_proj", lin(h * d_head, o.bias));
  B_proj = register_module("B_proj", lin(h * d_state, o.bias));
  C_proj = register_module("C_proj", lin(h * d_state, o.bias));
  a_proj = register_module("a_proj", lin(h, /*bias=*/true));
  D = register_parameter("D", at::zeros({h}));
  if (o.conv) conv_weight = register_parameter("conv_weight", at::zeros({h * (d_head + 2 * d_state), o.conv_width}));
  if (o.gate) z_proj = register_module("z_proj", lin(h * d_head, /*bias=*/true));
}

at::Tensor SsmHeadsImpl::forward(const at::Tensor& u, HybridCache* cache) {
  const int64_t Bsz = u.size(0), T = u.size(1), H = n_heads, P = d_head, N = d_state;
  at::Tensor xs = x_proj->forward(u).to(at::kFloat);  // [B, T, H*P]
  at::Tensor bs = B_proj->forward(u).to(at::kFloat);  // [B, T, H*N]
  at::Tensor cs = C_proj->forward(u).to(at::kFloat);  // [B, T, H*N]
  if (options.conv) {
    // Depthwise causal conv over the channels [x | B | C]; no activation, so the identity init
    // leaves the attention-initialised projections intact.
    const int64_t W = options.conv_width, Cc = H * (P + 2 * N);
    at::Tensor xbc = at::cat({xs, bs, cs}, -1);  // [B, T, Cc]
    at::Tensor prev = cache != nullptr && cache->conv_state.defined() ? cache->conv_state
                                                                      : at::zeros({Bsz, W - 1, Cc}, xbc.options());
    at::Tensor padded = at::cat({prev, xbc}, 1);  // [B, W-1+T, Cc]
    at::Tensor w = conv_weight.to(at::kFloat);     // [Cc, W]
    at::Tensor out = padded.narrow(1, 0, T) * w.select(1, 0);
    for (int64_t k = 1; k < W; ++k) out = out + padded.narrow(1, k, T) * w.select(1, k);
    if (cache != nullptr) cache->conv_state = padded.narrow(1, T, W - 1).clone();
    xs = out.narrow(-1, 0, H * P);
    bs = out.narrow(-1, H * P, H * N);
    cs = out.narrow(-1, H * P + H * N, H * N);
  }
  at::Tensor x4 = xs.reshape({Bsz, T, H, P});
  at::Tensor b4 = bs.reshape({Bsz, T, H, N});
  at::Tensor c4 = cs.reshape({Bsz, T, H, N});
  at::Tensor log_alpha = -at::softplus(a_proj->forward(u).to(at::kFloat));  // [B, T, H]
  // With the input step, the state takes (1 - alpha_t) x_t: an exponential moving average.
  at::Tensor x_in = options.input_step ? x4 * (-at::expm1(log_alpha)).unsqueeze(-1) : x4;
  at::Tensor y;  // [B, T, H, P]
  if (cache != nullptr && T == 1) {
    at::Tensor state = cache->ssm_state;
    y = ssd_step(state, x_in.select(1, 0), log_alpha.select(1, 0), b4.select(1, 0), c4.select(1, 0)).unsqueeze(1);
    cache->ssm_state = state;
  } else {
    auto [yy, final_state] =
        ssd_sequence(x_in, log_alpha, b4, c4, options.chunk_size, cache != nullptr ? cache->ssm_state : at::Tensor());
    y = yy;
    if (cache != nullptr) cache->ssm_state = final_state;
  }
  y = y + D.to(at::kFloat).view({1, 1, H, 1}) * x4;
  if (options.gate) y = y * at::silu(z_proj->forward(u).to(at::kFloat).view({Bsz, T, H, P}));
  return y.to(u.scalar_type());
}

HybridMixer::HybridMixer(const HybridConfig& hc, int64_t layer)
    : n_head(hc.base.n_head), n_head_kv(hc.base.n_head_kv), d_head(hc.base.d_head) {
  const ModelConfig& c = hc.base;
  kept_heads = hc.plan.heads_in_layer(layer);
  kept_groups = hc.plan.kv_groups(layer, c);
  std::vector<bool> kept(n_head, false);
  for (int64_t h : kept_heads) kept[h] = true;
  for (int64_t h = 0; h < n_head; ++h)
    if (!kept[h]) ssm_heads.push_back(h);
  auto lin = [](int64_t in, int64_t out, bool bias) { return torch::nn::Linear(torch::nn::LinearOptions(in, out).bias(bias)); };
  const int64_t nk = static_cast<int64_t>(kept_heads.size()), ng = static_cast<int64_t>(kept_groups.size());
  if (nk > 0) {
    q_proj = register_module("q_proj", lin(c.d_model, nk * d_head, c.qkv_bias));
    k_proj = register_module("k_proj", lin(c.d_model, ng * d_head, c.qkv_bias));
    v_proj = register_module("v_proj", lin(c.d_model, ng * d_head, c.qkv_bias));
  }
  o_proj = register_module("o_proj", lin(n_head * d_head, c.d_model, c.o_bias));
  if (!ssm_heads.empty()) ssm = register_module("ssm", SsmHeads(c, hc.ssm, static_cast<int64_t>(ssm_heads.size())));

  std::map<int64_t, int64_t> local;  // KV group -> index in kept_groups
  for (int64_t i = 0; i < ng; ++i) local[kept_groups[i]] = i;
  std::vector<int64_t> h2g, per_group(ng, 0);
  for (int64_t h : kept_heads) {
    h2g.push_back(local.at(h / c.n_group()));
    ++per_group[h2g.back()];
  }
  head_to_local_group_ = at::tensor(h2g.empty() ? std::vector<int64_t>{0} : h2g, at::kLong).narrow(0, 0, nk);
  uniform_groups_ = true;
  for (int64_t n : per_group) uniform_groups_ = uniform_groups_ && n == per_group[0];
  std::vector<int64_t> order(n_head);
  for (int64_t i = 0; i < nk; ++i) order[kept_heads[i]] = i;
  for (size_t i = 0; i < ssm_heads.size(); ++i) order[ssm_heads[i]] = nk + static_cast<int64_t>(i);
  head_order_ = at::tensor(order, at::kLong);
}

std::unique_ptr<LayerCache> HybridMixer::new_cache() const { return std::make_unique<HybridCache>(); }

at::Tensor HybridMixer::forward(const at::Tensor& x, MixerContext& ctx) {
  const int64_t B = x.size(0), T = x.size(1), nk = static_cast<int64_t>(kept_heads.size());
  auto* cache = ctx.cache != nullptr ? dynamic_cast<HybridCache*>(ctx.cache) : nullptr;
  RAD_CHECK(ctx.cache == nullptr || cache != nullptr, "hybrid layer {}: the decode cache is not a hybrid cache", ctx.layer);
  std::vector<at::Tensor> parts;
  if (nk > 0) {
    const int64_t ng = static_cast<int64_t>(kept_groups.size());
    at::Tensor q = apply_rope(q_proj->forward(x).view({B, T, nk, d_head}), *ctx.rope);
    at::Tensor k = apply_rope(k_proj->forward(x).view({B, T, ng, d_head}), *ctx.rope).transpose(1, 2);  // [B, G, T, D]
    at::Tensor v = v_proj->forward(x).view({B, T, ng, d_head}).transpose(1, 2);
    if (cache != nullptr) {
      if (cache->k.defined()) {
        k = at::cat({cache->k, k}, 2);
        v = at::cat({cache->v, v}, 2);
      }
      cache->k = k;
      cache->v = v;
    }
    if (!uniform_groups_) {  // one K/V per kept head (a view per head of its group's shared entry)
      const at::Tensor idx = head_to_local_group_.to(x.device());
      k = k.index_select(1, idx);
      v = v.index_select(1, idx);
    }
    parts.push_back(grouped_attention(q, k, v, *ctx.mask));  // [B, T, nk, D]
  }
  if (!ssm_heads.empty()) parts.push_back(ssm->forward(x, cache));  // [B, T, H_s, D]
  at::Tensor z = parts.size() == 1 ? parts[0] : at::cat(parts, 2);
  if (nk > 0 && !ssm_heads.empty()) z = z.index_select(2, head_order_.to(x.device()));  // teacher's head order
  if (ctx.hooks != nullptr && ctx.hooks->head_output) z = ctx.hooks->head_output(ctx.layer, z);
  return o_proj->forward(z.reshape({B, T, n_head * d_head}));
}

CausalLM make_hybrid_lm(const HybridConfig& config) {
  config.validate("hybrid config");
  std::vector<std::shared_ptr<Mixer>> mixers;
  for (int64_t l = 0; l < config.base.n_layer; ++l) mixers.push_back(std::make_shared<HybridMixer>(config, l));
  return CausalLM(config.base, mixers);
}

}  // namespace rad
