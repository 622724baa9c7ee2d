#include "rad/model/causal_lm.h"

#include <ATen/core/Generator.h>
#include <ATen/autocast_mode.h>
#include <torch/csrc/autograd/autograd.h>  // torch::autograd::backward (not included by the next in 2.x)
#include <torch/csrc/autograd/custom_function.h>
#include <torch/nn/init.h>

#include <algorithm>

#include "rad/core/autocast.h"
#include "rad/core/error.h"

namespace rad {

int64_t DecodeCache::bytes() const {
  int64_t total = 0;
  for (const auto& l : layers)
    if (l) total += l->bytes();
  return total;
}

DecoderModelImpl::DecoderModelImpl(const ModelConfig& c, const std::vector<std::shared_ptr<Mixer>>& mixers) {
  RAD_CHECK(static_cast<int64_t>(mixers.size()) == c.n_layer, "model has {} layers but {} mixers were given",
            c.n_layer, mixers.size());
  embed_tokens = register_module("embed_tokens", torch::nn::Embedding(c.n_vocab, c.d_model));
  layers = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < c.n_layer; ++i) {
    DecoderLayer layer(c, mixers[i]);
    layers->push_back(layer);
    layer_list.push_back(layer);
  }
  norm = register_module("norm", RMSNorm(c.d_model, c.rms_norm_eps));
}

namespace {
std::vector<std::shared_ptr<Mixer>> attention_mixers(const ModelConfig& c) {
  std::vector<std::shared_ptr<Mixer>> mixers;
  for (int64_t i = 0; i < c.n_layer; ++i) mixers.push_back(std::make_shared<Attention>(c));
  return mixers;
}
}  // namespace

CausalLMImpl::CausalLMImpl(const ModelConfig& c) : CausalLMImpl(c, attention_mixers(c)) {}

CausalLMImpl::CausalLMImpl(const ModelConfig& c, const std::vector<std::shared_ptr<Mixer>>& mixers) : config_(c) {
  model = register_module("model", DecoderModel(c, mixers));
  if (!c.tie_word_embeddings)
    lm_head = register_module("lm_head", torch::nn::Linear(torch::nn::LinearOptions(c.d_model, c.n_vocab).bias(false)));
  inv_freq_ = rope_inv_freq(c);
}

at::ScalarType CausalLMImpl::dtype() const { return model->embed_tokens->weight.scalar_type(); }

at::Device CausalLMImpl::device() const { return model->embed_tokens->weight.device(); }

int64_t CausalLMImpl::parameter_count() const {
  int64_t n = 0;
  for (const auto& p : parameters()) n += p.numel();
  return n;
}

DecodeCache CausalLMImpl::new_cache() const {
  DecodeCache cache;
  for (const auto& layer : model->layer_list) cache.layers.push_back(layer->self_attn->new_cache());
  return cache;
}

at::Tensor causal_mask(int64_t past, int64_t T, int64_t sliding_window, const at::Device& device) {
  auto opts = at::TensorOptions().dtype(at::kLong).device(device);
  at::Tensor q_pos = at::arange(past, past + T, opts).unsqueeze(1);  // [T, 1]
  at::Tensor k_pos = at::arange(0, past + T, opts).unsqueeze(0);     // [1, S]
  at::Tensor allowed = k_pos <= q_pos;
  if (sliding_window > 0) allowed = allowed.logical_and(k_pos > q_pos - sliding_window);
  return allowed;
}

at::Tensor CausalLMImpl::embed(const at::Tensor& input_ids) {
  RAD_CHECK(input_ids.dim() == 2, "input_ids must be [batch, tokens], got {} dims", input_ids.dim());
  if (input_ids.numel() > 0) {
    int64_t lo = input_ids.min().item<int64_t>(), hi = input_ids.max().item<int64_t>();
    RAD_CHECK(lo >= 0 && hi < config_.n_vocab, "token id out of range: ids span [{}, {}] but the vocabulary has {} tokens",
              lo, hi, config_.n_vocab);
  }
  // Token ids are made on the CPU; a model moved to a GPU (--device) takes them there.
  const at::Device device = this->device();
  at::Tensor h = model->embed_tokens->forward(input_ids.device() == device ? input_ids : input_ids.to(device));
  const at::ScalarType compute = compute_dtype();
  return h.scalar_type() == compute ? h : h.to(compute);
}

ScopedParameterDtype::ScopedParameterDtype(torch::nn::Module& module, at::ScalarType type) {
  for (auto& p : module.parameters()) {
    if (p.scalar_type() == type) continue;
    // A converted weight kept for backward would be swapped back under autograd's feet.
    RAD_CHECK(!at::GradMode::is_enabled(), "weights held in {} but computed in {} run only without gradients "
              "(a frozen teacher); train a model in its own dtype", c10::toString(p.scalar_type()), c10::toString(type));
    saved_.emplace_back(p, p.data());
    p.set_data(p.data().to(type));
  }
}

ScopedParameterDtype::~ScopedParameterDtype() {
  for (auto& [p, original] : saved_) p.set_data(original);
}

namespace {

// One decoder layer as a reentrant checkpoint (what torch.utils.checkpoint does in Python; libtorch
// has no C++ helper). The forward runs without recording a graph and saves the layer's input and
// the tables it used; the backward recomputes the layer with gradients from that input, under the
// same autocast state, and back-propagates the incoming gradient through the recomputation: the
// layer's parameter gradients accumulate as in a plain backward, the input's gradient is returned.
struct CheckpointedLayer : torch::autograd::Function<CheckpointedLayer> {
  static MixerContext context(int64_t index, const RopeTables& rope, const at::Tensor& mask) {
    MixerContext ctx;
    ctx.layer = index;
    ctx.past_length = 0;
    ctx.rope = &rope;
    ctx.mask = &mask;
    return ctx;
  }

  // `layer` is the DecoderLayerImpl's address: the model outlives its backward pass.
  static at::Tensor forward(torch::autograd::AutogradContext* actx, const at::Tensor& x, const at::Tensor& cos,
                            const at::Tensor& sin, const at::Tensor& mask, int64_t layer, int64_t index) {
    actx->save_for_backward({x, cos, sin, mask});
    actx->saved_data["layer"] = layer;
    actx->saved_data["index"] = index;
    const AutocastState autocast = AutocastState::current();
    actx->saved_data["autocast_cpu"] = autocast.cpu;
    actx->saved_data["autocast_cpu_dtype"] = autocast.cpu_dtype;
    actx->saved_data["autocast_cuda"] = autocast.cuda;
    actx->saved_data["autocast_cuda_dtype"] = autocast.cuda_dtype;
    RopeTables rope{cos, sin};
    MixerContext ctx = context(index, rope, mask);
    return reinterpret_cast<DecoderLayerImpl*>(layer)->forward(x, ctx);  // grad mode is off here
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* actx,
                                                 torch::autograd::variable_list grad_out) {
    if (!grad_out[0].defined()) return {at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
    auto saved = actx->get_saved_variables();
    at::Tensor x = saved[0].detach().requires_grad_(true);
    RopeTables rope{saved[1], saved[2]};
    const at::Tensor mask = saved[3];
    auto* layer = reinterpret_cast<DecoderLayerImpl*>(actx->saved_data["layer"].toInt());
    MixerContext ctx = context(actx->saved_data["index"].toInt(), rope, mask);
    at::Tensor out;
    {
      at::AutoGradMode grad(true);
      // The forward's autocast, CPU and CUDA: a CUDA backward runs on autograd's device thread,
      // whose own autocast is off.
      AutocastState autocast;
      autocast.cpu = actx->saved_data["autocast_cpu"].toBool();
      autocast.cpu_dtype = actx->saved_data["autocast_cpu_dtype"].toScalarType();
      autocast.cuda = actx->saved_data["autocast_cuda"].toBool();
      autocast.cuda_dtype = actx->saved_data["autocast_cuda_dtype"].toScalarType();
      const AutocastState was = AutocastState::current();
      autocast.apply();
      try {
        out = layer->forward(x, ctx);
      } catch (...) {
        was.apply();
        throw;
      }
      was.apply();
      if (autocast.any() && !was.any()) at::autocast::clear_cache();
    }
    torch::autograd::backward({out}, {grad_out[0]});
    return {x.grad(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

at::Tensor CausalLMImpl::run_layers(const at::Tensor& hidden, int64_t begin, int64_t end, DecodeCache* cache,
                                    const ForwardHooks* hooks) {
  RAD_CHECK(0 <= begin && begin <= end && end <= config_.n_layer, "layer range [{}, {}) invalid for {} layers", begin,
            end, config_.n_layer);
  const int64_t T = hidden.size(1);
  const int64_t past = cache != nullptr ? cache->length : 0;
  if (cache != nullptr && cache->layers.empty()) *cache = new_cache();
  at::Tensor positions = at::arange(past, past + T, at::TensorOptions().dtype(at::kLong).device(hidden.device()));
  RopeTables rope = rope_tables(inv_freq_.to(hidden.device()), positions, hidden.scalar_type());
  at::Tensor mask = causal_mask(past, T, config_.sliding_window, hidden.device());
  if (hooks != nullptr) {
    if (hooks->residual_in) hooks->residual_in->resize(config_.n_layer);
    if (hooks->residual_out) hooks->residual_out->resize(config_.n_layer);
  }
  at::Tensor h = hidden;
  for (int64_t l = begin; l < end; ++l) {
    MixerContext ctx;
    ctx.layer = l;
    ctx.past_length = past;
    ctx.rope = &rope;
    ctx.mask = &mask;
    ctx.cache = cache != nullptr ? cache->layers[l].get() : nullptr;
    ctx.hooks = hooks;
    if (hooks != nullptr && hooks->residual_in) (*hooks->residual_in)[l] = h;
    std::optional<ScopedParameterDtype> converted;  // this layer's weights in the compute dtype
    if (compute_dtype_) converted.emplace(*model->layer_list[l], *compute_dtype_);
    DecoderLayer& layer = model->layer_list[l];
    bool checkpoint = checkpointing_ && at::GradMode::is_enabled() && cache == nullptr && hooks == nullptr;
    if (checkpoint) {
      bool params_train = false;
      for (const auto& p : layer->parameters()) params_train = params_train || p.requires_grad();
      checkpoint = params_train || h.requires_grad();  // else nothing to back-propagate here
    }
    if (checkpoint) {
      // The custom function's output needs a gradient only if an input does: a layer whose input
      // is constant (frozen embeddings, the teacher's residual) gets one, so its parameters train.
      at::Tensor in = h.requires_grad() ? h : h.detach().requires_grad_(true);
      h = CheckpointedLayer::apply(in, rope.cos, rope.sin, mask, reinterpret_cast<int64_t>(layer.get()), l);
    } else {
      h = layer->forward(h, ctx);
    }
    if (hooks != nullptr && hooks->residual_out) (*hooks->residual_out)[l] = h;
  }
  return h;
}

at::Tensor CausalLMImpl::final_logits(const at::Tensor& hidden) {
  at::Tensor h;
  {
    std::optional<ScopedParameterDtype> converted;
    if (compute_dtype_) converted.emplace(*model->norm, *compute_dtype_);
    h = model->norm->forward(hidden);
  }
  const at::Tensor& w = lm_head ? lm_head->weight : model->embed_tokens->weight;  // [n_vocab, d_model]
  if (!compute_dtype_ || w.scalar_type() == h.scalar_type()) return lm_head ? lm_head->forward(h) : at::linear(h, w);
  // Weights held in another dtype (set_compute_dtype): convert them a chunk of the vocabulary at a
  // time, so the converted copy stays small next to the logits (an 8B model's head is 525M weights).
  RAD_CHECK(!at::GradMode::is_enabled(), "LM head held in {} but computed in {} runs only without gradients",
            c10::toString(w.scalar_type()), c10::toString(h.scalar_type()));
  constexpr int64_t kChunk = 8192;
  const int64_t V = w.size(0);
  std::vector<int64_t> out_shape(h.sizes().begin(), h.sizes().end());
  out_shape.back() = V;
  at::Tensor logits = at::empty(out_shape, h.options());
  at::Tensor h2 = h.reshape({-1, h.size(-1)});
  at::Tensor out2 = logits.view({-1, V});
  for (int64_t v0 = 0; v0 < V; v0 += kChunk) {
    const int64_t n = std::min(kChunk, V - v0);
    out2.narrow(1, v0, n).copy_(at::linear(h2, w.narrow(0, v0, n).to(h.scalar_type())));
  }
  return logits;
}

at::Tensor CausalLMImpl::forward(const at::Tensor& input_ids, DecodeCache* cache, const ForwardHooks* hooks) {
  at::Tensor h = run_layers(embed(input_ids), 0, config_.n_layer, cache, hooks);
  if (cache != nullptr) cache->length += input_ids.size(1);
  return final_logits(h);
}

void init_parameters(torch::nn::Module& module, double std, uint64_t seed) {
  at::NoGradGuard no_grad;
  auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
  for (auto& item : module.named_parameters()) {
    at::Tensor& p = item.value();
    const std::string& name = item.key();
    bool is_norm = name.find("norm") != std::string::npos;
    bool is_bias = name.size() >= 4 && name.compare(name.size() - 4, 4, "bias") == 0;
    if (is_norm) p.fill_(1.0);
    else if (is_bias) p.zero_();
    else p.copy_(at::normal(0.0, std, p.sizes(), gen, at::TensorOptions().dtype(at::kFloat)).to(p.scalar_type()));
  }
}

}  // namespace rad
