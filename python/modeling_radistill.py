# coding=utf-8
"""Hugging Face `transformers` modeling code for radistill Transformer-SSM hybrids.

radistill writes this file into every hybrid directory it saves, next to `config.json` (whose
"auto_map" names the classes below) and `model.safetensors`, so that

    from transformers import AutoModelForCausalLM, AutoTokenizer
    model = AutoModelForCausalLM.from_pretrained(DIR, trust_remote_code=True)
    model.generate(...)

works. Pure PyTorch, no custom kernels. Tested with the transformers version that radistill's
`scripts/setup_python.sh` pins.

The model (radistill DESIGN section 4; the C++ reference is src/rad/model/hybrid_mixer.cpp): a
Llama / Mistral / Qwen2 decoder whose token mixer in each layer splits the query heads. The head
plan's kept heads stay the teacher's softmax attention heads (RoPE, causal softmax; kept heads of
one KV group share ONE key/value projection and cache entry; Mistral's sliding window); every other
head is a discrete Mamba-2 head with head dim P = d_head and state dim N = d_state:

    x_t = W_x u_t   B_t = W_B u_t   C_t = W_C u_t        (optionally a depthwise causal conv over
                                                          the channels [x | B | C], no activation)
    alpha_t = exp(-softplus(w_a . u_t + b_a))
    H_t = alpha_t H_{t-1} + s_t x_t B_t^T                 s_t = 1 - alpha_t with ssm.input_step,
                                                          else 1
    y_t = H_t C_t + D x_t                                 (x_t after the conv, unscaled)
    y_t = y_t * silu(W_z u_t)                             (with ssm.gate)

All head outputs, in the teacher's head order, go through the teacher's o_proj. The SSM arithmetic
runs in float32 whatever the model's dtype, as in radistill.

Parameter names are the checkpoint keys of model.safetensors:
    model.layers.{i}.self_attn.{q,k,v}_proj.*   rows of the kept heads / kept KV groups, ascending
    model.layers.{i}.self_attn.o_proj.*         the teacher's
    model.layers.{i}.self_attn.ssm.{x,B,C,a,z}_proj.*, .D, .conv_weight
"""

import math
from typing import List, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from transformers import PretrainedConfig, PreTrainedModel
from transformers.cache_utils import Cache
from transformers.generation import GenerationMixin
from transformers.modeling_outputs import BaseModelOutputWithPast, CausalLMOutputWithPast


# ----------------------------------------------------------------------------------------- config

_SSM_DEFAULTS = {
    "d_state": None,  # None: the head dim
    "conv": False,
    "conv_width": 4,
    "gate": False,
    "bias": False,
    "input_step": False,
    "chunk_size": 64,
    "init": "attention",
}

_MISSING = object()


class RadistillHybridConfig(PretrainedConfig):
    """config.json of a radistill hybrid: the teacher's Llama-family fields plus "head_plan" and
    "ssm" (and "teacher_model_type" / "teacher_architecture")."""

    model_type = "radistill_hybrid"
    keys_to_ignore_at_inference = ["past_key_values"]

    def __init__(
        self,
        vocab_size=32000,
        hidden_size=4096,
        intermediate_size=11008,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=None,
        head_dim=None,
        hidden_act="silu",
        max_position_embeddings=2048,
        rms_norm_eps=1e-6,
        rope_theta=10000.0,
        rope_scaling=None,
        attention_bias=False,
        mlp_bias=False,
        tie_word_embeddings=False,
        use_cache=True,
        teacher_model_type="llama",
        teacher_architecture="LlamaForCausalLM",
        head_plan=None,
        ssm=None,
        **kwargs,
    ):
        sliding_window = kwargs.pop("sliding_window", _MISSING)
        self.use_sliding_window = kwargs.pop("use_sliding_window", False)
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.intermediate_size = intermediate_size
        self.num_hidden_layers = num_hidden_layers
        self.num_attention_heads = num_attention_heads
        self.num_key_value_heads = num_attention_heads if num_key_value_heads is None else num_key_value_heads
        self.head_dim = hidden_size // num_attention_heads if head_dim is None else head_dim
        self.hidden_act = hidden_act
        self.max_position_embeddings = max_position_embeddings
        self.rms_norm_eps = rms_norm_eps
        self.rope_theta = rope_theta
        self.rope_scaling = rope_scaling
        self.attention_bias = attention_bias
        self.mlp_bias = mlp_bias
        self.use_cache = use_cache
        self.teacher_model_type = teacher_model_type
        self.teacher_architecture = teacher_architecture
        # Mistral: an absent "sliding_window" means its default 4096, null means none (as radistill).
        if sliding_window is _MISSING:
            sliding_window = 4096 if teacher_model_type == "mistral" else None
        self.sliding_window = sliding_window
        self.head_plan = head_plan if head_plan is not None else {"kept_heads": []}
        merged = dict(_SSM_DEFAULTS)
        merged.update(ssm or {})
        if merged["d_state"] is None:
            merged["d_state"] = self.head_dim
        self.ssm = merged
        super().__init__(tie_word_embeddings=tie_word_embeddings, **kwargs)
        self._validate()

    def _validate(self):
        if self.hidden_act != "silu":
            raise ValueError(f"radistill hybrid: hidden_act {self.hidden_act!r} is not supported (expected 'silu')")
        if self.num_attention_heads % self.num_key_value_heads != 0:
            raise ValueError("radistill hybrid: num_attention_heads must be a multiple of num_key_value_heads")
        if self.head_dim % 2 != 0:
            raise ValueError(f"radistill hybrid: head dimension {self.head_dim} must be even for RoPE")
        if self.teacher_model_type == "qwen2" and self.use_sliding_window:
            raise ValueError("radistill hybrid: Qwen2 use_sliding_window=true is not supported")
        for item in self.head_plan.get("kept_heads", []):
            layer, head = int(item[0]), int(item[1])
            if not (0 <= layer < self.num_hidden_layers and 0 <= head < self.num_attention_heads):
                raise ValueError(f"radistill hybrid: kept head [{layer}, {head}] is out of range")
        if int(self.ssm["d_state"]) < 1:
            raise ValueError("radistill hybrid: ssm.d_state must be >= 1")
        if self.ssm["conv"] and int(self.ssm["conv_width"]) < 1:
            raise ValueError("radistill hybrid: ssm.conv_width must be >= 1")

    # Derived quantities (methods, so that they are not serialised into config.json).
    def kept_heads(self, layer: int) -> List[int]:
        return sorted({int(h) for l, h in self.head_plan.get("kept_heads", []) if int(l) == layer})

    def n_group(self) -> int:
        return self.num_attention_heads // self.num_key_value_heads

    def effective_sliding_window(self) -> int:
        if self.teacher_model_type != "mistral" or self.sliding_window is None:
            return 0
        return int(self.sliding_window)

    def qkv_bias(self) -> bool:
        return True if self.teacher_model_type == "qwen2" else bool(self.attention_bias)

    def o_bias(self) -> bool:
        return False if self.teacher_model_type == "qwen2" else bool(self.attention_bias)


# ------------------------------------------------------------------------------------------ cache

class RadistillHybridCache(Cache):
    """Decode state of a hybrid: per layer, the K/V of its kept KV groups ([B, n_kept_groups, S,
    d_head], after RoPE), the SSM state ([B, H_s, P, N], float32) and the conv's last inputs
    ([B, conv_width - 1, H_s * (P + 2N)], float32)."""

    def __init__(self, num_layers: int):
        super().__init__()
        self.key_cache: List[Optional[torch.Tensor]] = [None] * num_layers
        self.value_cache: List[Optional[torch.Tensor]] = [None] * num_layers
        self.ssm_states: List[Optional[torch.Tensor]] = [None] * num_layers
        self.conv_states: List[Optional[torch.Tensor]] = [None] * num_layers
        self._seen_tokens = 0

    def get_seq_length(self, layer_idx: Optional[int] = 0) -> int:
        return self._seen_tokens

    def get_max_length(self) -> Optional[int]:
        return None

    def get_max_cache_shape(self) -> Optional[int]:
        return None

    def update_kv(self, layer_idx: int, k: torch.Tensor, v: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        if self.key_cache[layer_idx] is not None:
            k = torch.cat([self.key_cache[layer_idx], k], dim=2)
            v = torch.cat([self.value_cache[layer_idx], v], dim=2)
        self.key_cache[layer_idx] = k
        self.value_cache[layer_idx] = v
        return k, v

    def _map(self, fn):  # every stored tensor through fn
        for store in (self.key_cache, self.value_cache, self.ssm_states, self.conv_states):
            for i, t in enumerate(store):
                if t is not None:
                    store[i] = fn(t)
        return self

    def reorder_cache(self, beam_idx: torch.LongTensor):
        return self._map(lambda t: t.index_select(0, beam_idx.to(t.device)))

    def batch_repeat_interleave(self, repeats: int):
        return self._map(lambda t: t.repeat_interleave(repeats, dim=0))

    def batch_select_indices(self, indices: torch.Tensor):
        return self._map(lambda t: t[indices])


# ----------------------------------------------------------------------------------------- layers

class RadistillRMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * h.to(x.dtype)


class RadistillMLP(nn.Module):
    def __init__(self, config: RadistillHybridConfig):
        super().__init__()
        d, f, b = config.hidden_size, config.intermediate_size, bool(config.mlp_bias)
        self.gate_proj = nn.Linear(d, f, bias=b)
        self.up_proj = nn.Linear(d, f, bias=b)
        self.down_proj = nn.Linear(f, d, bias=b)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


def rope_inv_freq(config: RadistillHybridConfig, device=None) -> torch.Tensor:
    """Inverse frequencies [d_head / 2] (float32) with the config's rope_scaling (default, linear,
    llama3), the arithmetic of radistill's rope.cpp and HF's."""
    dim = config.head_dim
    exponents = torch.arange(0, dim, 2, dtype=torch.int64, device=device).float() / dim
    inv_freq = 1.0 / (float(config.rope_theta) ** exponents)
    rs = config.rope_scaling
    kind = None
    if isinstance(rs, dict):
        kind = rs.get("rope_type", rs.get("type"))
    if kind in (None, "default"):
        return inv_freq
    factor = float(rs["factor"])
    if kind == "linear":
        return inv_freq / factor
    if kind == "llama3":
        low, high = float(rs["low_freq_factor"]), float(rs["high_freq_factor"])
        old_ctx = float(rs["original_max_position_embeddings"])
        low_freq_wavelen, high_freq_wavelen = old_ctx / low, old_ctx / high
        wavelen = 2.0 * math.pi / inv_freq
        scaled = torch.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
        smooth = (old_ctx / wavelen - low) / (high - low)
        smoothed = (1.0 - smooth) * scaled / factor + smooth * scaled
        is_medium = (wavelen >= high_freq_wavelen) & (wavelen <= low_freq_wavelen)
        return torch.where(is_medium, smoothed, scaled).float()
    raise ValueError(f"radistill hybrid: rope_scaling type {kind!r} is not supported (default, linear, llama3)")


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x [B, T, H, D]; cos/sin [B, T, D] -> x * cos + rotate_half(x) * sin."""
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos.unsqueeze(2) + rotated * sin.unsqueeze(2)


def ssd_step(state: torch.Tensor, x: torch.Tensor, log_alpha: torch.Tensor, Bm: torch.Tensor, Cm: torch.Tensor):
    """One token: state [B, H, P, N], x [B, H, P], log_alpha [B, H], Bm/Cm [B, H, N].
    Returns (y [B, H, P], new state)."""
    state = torch.exp(log_alpha)[:, :, None, None] * state + x.unsqueeze(-1) * Bm.unsqueeze(-2)
    y = torch.einsum("bhpn,bhn->bhp", state, Cm)
    return y, state


def ssd_chunked(x, log_alpha, Bm, Cm, chunk: int, state: torch.Tensor):
    """The chunked SSD form of the recurrence over T tokens: inside a chunk the quadratic form
    y_t = sum_{s<=t} (C_t . B_s) prod_{k=s+1..t} alpha_k x_s, plus the carried state; shapes
    x [B, T, H, P], log_alpha [B, T, H], Bm/Cm [B, T, H, N], state [B, H, P, N].
    Returns (y [B, T, H, P], final state)."""
    T = x.shape[1]
    ys = []
    for t0 in range(0, T, chunk):
        xc, lc = x[:, t0:t0 + chunk], log_alpha[:, t0:t0 + chunk]
        bc, cc = Bm[:, t0:t0 + chunk], Cm[:, t0:t0 + chunk]
        L = xc.shape[1]
        cum = torch.cumsum(lc, dim=1)  # [B, L, H]
        causal = torch.ones(L, L, dtype=torch.bool, device=x.device).tril()
        diff = cum[:, :, None, :] - cum[:, None, :, :]  # [B, t, s, H]
        decay = torch.exp(diff.masked_fill(~causal[None, :, :, None], float("-inf")))
        scores = torch.einsum("bthn,bshn->btsh", cc, bc) * decay
        y = torch.einsum("btsh,bshp->bthp", scores, xc)
        y = y + torch.einsum("bhpn,bthn->bthp", state, cc) * torch.exp(cum).unsqueeze(-1)
        last = cum[:, -1]  # [B, H]
        weight = torch.exp(last[:, None, :] - cum)  # [B, L, H]: decay from s to the chunk's end
        state = state * torch.exp(last)[:, :, None, None] + torch.einsum("bshp,bshn->bhpn", xc * weight.unsqueeze(-1), bc)
        ys.append(y)
    return torch.cat(ys, dim=1), state


class RadistillSsmHeads(nn.Module):
    """The SSM heads of one layer, computed together as [B, T, H_s, ...]."""

    def __init__(self, config: RadistillHybridConfig, n_heads: int):
        super().__init__()
        o = config.ssm
        d, P, N = config.hidden_size, config.head_dim, int(o["d_state"])
        self.n_heads, self.d_head, self.d_state = n_heads, P, N
        self.conv = bool(o["conv"])
        self.conv_width = int(o["conv_width"])
        self.gate = bool(o["gate"])
        self.input_step = bool(o.get("input_step", False))
        self.chunk_size = max(1, int(o.get("chunk_size", 64)))
        bias = bool(o["bias"])
        self.x_proj = nn.Linear(d, n_heads * P, bias=bias)
        self.B_proj = nn.Linear(d, n_heads * N, bias=bias)
        self.C_proj = nn.Linear(d, n_heads * N, bias=bias)
        self.a_proj = nn.Linear(d, n_heads, bias=True)
        self.D = nn.Parameter(torch.zeros(n_heads))
        if self.conv:
            self.conv_weight = nn.Parameter(torch.zeros(n_heads * (P + 2 * N), self.conv_width))
        if self.gate:
            self.z_proj = nn.Linear(d, n_heads * P, bias=True)

    def forward(self, u: torch.Tensor, cache: Optional[RadistillHybridCache], layer_idx: int,
                token_mask: Optional[torch.Tensor]) -> torch.Tensor:
        Bsz, T, _ = u.shape
        H, P, N = self.n_heads, self.d_head, self.d_state
        xs = self.x_proj(u).float()
        bs = self.B_proj(u).float()
        cs = self.C_proj(u).float()
        if token_mask is not None:  # padding: zero inputs leave the state (and conv history) as without it
            m = token_mask.to(xs.dtype).unsqueeze(-1)
            xs, bs, cs = xs * m, bs * m, cs * m
        if self.conv:
            W, Cc = self.conv_width, H * (P + 2 * N)
            xbc = torch.cat([xs, bs, cs], dim=-1)
            prev = cache.conv_states[layer_idx] if cache is not None else None
            if prev is None:
                prev = xbc.new_zeros(Bsz, W - 1, Cc)
            padded = torch.cat([prev, xbc], dim=1)  # [B, W-1+T, Cc]
            w = self.conv_weight.float()
            out = padded[:, 0:T] * w[:, 0]
            for k in range(1, W):
                out = out + padded[:, k:k + T] * w[:, k]
            if cache is not None:
                cache.conv_states[layer_idx] = padded[:, T:T + W - 1].clone()
            xs, bs, cs = out[..., :H * P], out[..., H * P:H * P + H * N], out[..., H * P + H * N:]
        x4 = xs.reshape(Bsz, T, H, P)
        b4 = bs.reshape(Bsz, T, H, N)
        c4 = cs.reshape(Bsz, T, H, N)
        log_alpha = -F.softplus(self.a_proj(u).float())  # [B, T, H]
        x_in = x4 * (-torch.expm1(log_alpha)).unsqueeze(-1) if self.input_step else x4
        state = cache.ssm_states[layer_idx] if cache is not None else None
        if state is None:
            state = x4.new_zeros(Bsz, H, P, N)
        if T == 1:
            y, state = ssd_step(state, x_in[:, 0], log_alpha[:, 0], b4[:, 0], c4[:, 0])
            y = y.unsqueeze(1)
        else:
            y, state = ssd_chunked(x_in, log_alpha, b4, c4, self.chunk_size, state)
        if cache is not None:
            cache.ssm_states[layer_idx] = state
        y = y + self.D.float().view(1, 1, H, 1) * x4
        if self.gate:
            y = y * F.silu(self.z_proj(u).float().view(Bsz, T, H, P))
        return y.to(u.dtype)


class RadistillHybridMixer(nn.Module):
    """Kept heads: softmax attention with RoPE over the kept KV groups; other heads: SSM heads;
    then the teacher's o_proj over all heads in the teacher's order."""

    def __init__(self, config: RadistillHybridConfig, layer_idx: int):
        super().__init__()
        self.layer_idx = layer_idx
        self.n_head, self.d_head = config.num_attention_heads, config.head_dim
        n_group = config.n_group()
        self.kept_heads = config.kept_heads(layer_idx)
        self.kept_groups = sorted({h // n_group for h in self.kept_heads})
        kept = set(self.kept_heads)
        self.ssm_heads = [h for h in range(self.n_head) if h not in kept]
        local = {g: i for i, g in enumerate(self.kept_groups)}
        self.head_group = [local[h // n_group] for h in self.kept_heads]  # kept head -> index in kept_groups
        order = [0] * self.n_head
        for i, h in enumerate(self.kept_heads + self.ssm_heads):
            order[h] = i
        self.head_order = order  # position of head h in cat(kept, ssm)
        d, D = config.hidden_size, self.d_head
        nk, ng = len(self.kept_heads), len(self.kept_groups)
        if nk > 0:
            self.q_proj = nn.Linear(d, nk * D, bias=config.qkv_bias())
            self.k_proj = nn.Linear(d, ng * D, bias=config.qkv_bias())
            self.v_proj = nn.Linear(d, ng * D, bias=config.qkv_bias())
        self.o_proj = nn.Linear(self.n_head * D, d, bias=config.o_bias())
        if self.ssm_heads:
            self.ssm = RadistillSsmHeads(config, len(self.ssm_heads))

    def forward(self, x, cos, sin, attn_mask, cache, token_mask):
        Bsz, T, _ = x.shape
        D, nk, ng = self.d_head, len(self.kept_heads), len(self.kept_groups)
        parts = []
        if nk > 0:
            q = apply_rope(self.q_proj(x).view(Bsz, T, nk, D), cos, sin).transpose(1, 2)  # [B, nk, T, D]
            k = apply_rope(self.k_proj(x).view(Bsz, T, ng, D), cos, sin).transpose(1, 2)  # [B, ng, T, D]
            v = self.v_proj(x).view(Bsz, T, ng, D).transpose(1, 2)
            if cache is not None:
                k, v = cache.update_kv(self.layer_idx, k, v)
            if self.head_group != list(range(ng)):  # one K/V per kept head: its group's shared entry
                idx = torch.tensor(self.head_group, dtype=torch.long, device=x.device)
                k, v = k.index_select(1, idx), v.index_select(1, idx)
            scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(D)  # [B, nk, T, S]
            scores = scores.float().masked_fill(~attn_mask, float("-inf"))
            probs = torch.softmax(scores, dim=-1)
            probs = probs.masked_fill(~attn_mask.any(-1, keepdim=True), 0.0).to(v.dtype)  # fully masked rows
            parts.append(torch.matmul(probs, v).transpose(1, 2))  # [B, T, nk, D]
        if self.ssm_heads:
            parts.append(self.ssm(x, cache, self.layer_idx, token_mask))  # [B, T, H_s, D]
        z = parts[0] if len(parts) == 1 else torch.cat(parts, dim=2)
        if nk > 0 and self.ssm_heads:
            z = z.index_select(2, torch.tensor(self.head_order, dtype=torch.long, device=x.device))
        return self.o_proj(z.reshape(Bsz, T, self.n_head * D))


class RadistillDecoderLayer(nn.Module):
    def __init__(self, config: RadistillHybridConfig, layer_idx: int):
        super().__init__()
        self.self_attn = RadistillHybridMixer(config, layer_idx)
        self.mlp = RadistillMLP(config)
        self.input_layernorm = RadistillRMSNorm(config.hidden_size, config.rms_norm_eps)
        self.post_attention_layernorm = RadistillRMSNorm(config.hidden_size, config.rms_norm_eps)

    def forward(self, x, cos, sin, attn_mask, cache, token_mask):
        h = x + self.self_attn(self.input_layernorm(x), cos, sin, attn_mask, cache, token_mask)
        return h + self.mlp(self.post_attention_layernorm(h))


# ----------------------------------------------------------------------------------------- models

class RadistillHybridPreTrainedModel(PreTrainedModel):
    config_class = RadistillHybridConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = False
    _no_split_modules = ["RadistillDecoderLayer"]
    _supports_cache_class = False  # generate() leaves the cache to the model (RadistillHybridCache)
    _is_stateful = True  # recurrent state: no rolling back (assisted / contrastive decoding)

    def _init_weights(self, module):
        std = getattr(self.config, "initializer_range", 0.02)
        if isinstance(module, nn.Linear):
            module.weight.data.normal_(mean=0.0, std=std)
            if module.bias is not None:
                module.bias.data.zero_()
        elif isinstance(module, nn.Embedding):
            module.weight.data.normal_(mean=0.0, std=std)


class RadistillHybridModel(RadistillHybridPreTrainedModel):
    def __init__(self, config: RadistillHybridConfig):
        super().__init__(config)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList([RadistillDecoderLayer(config, i) for i in range(config.num_hidden_layers)])
        self.norm = RadistillRMSNorm(config.hidden_size, config.rms_norm_eps)
        self.post_init()

    def get_input_embeddings(self):
        return self.embed_tokens

    def set_input_embeddings(self, value):
        self.embed_tokens = value

    def forward(
        self,
        input_ids: Optional[torch.LongTensor] = None,
        attention_mask: Optional[torch.Tensor] = None,
        position_ids: Optional[torch.LongTensor] = None,
        past_key_values: Optional[RadistillHybridCache] = None,
        inputs_embeds: Optional[torch.FloatTensor] = None,
        use_cache: Optional[bool] = None,
        output_attentions: Optional[bool] = None,
        output_hidden_states: Optional[bool] = None,
        return_dict: Optional[bool] = None,
        **kwargs,
    ) -> Union[Tuple, BaseModelOutputWithPast]:
        use_cache = use_cache if use_cache is not None else self.config.use_cache
        output_hidden_states = (
            output_hidden_states if output_hidden_states is not None else self.config.output_hidden_states
        )
        return_dict = return_dict if return_dict is not None else self.config.use_return_dict
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("radistill hybrid: pass exactly one of input_ids and inputs_embeds")
        h = self.embed_tokens(input_ids) if inputs_embeds is None else inputs_embeds
        Bsz, T = h.shape[:2]
        cache = past_key_values
        if cache is not None and not isinstance(cache, RadistillHybridCache):
            # An empty cache of another kind (newer transformers make a DynamicCache): use ours.
            if isinstance(cache, Cache) and cache.get_seq_length() == 0:
                cache = None
            else:
                raise TypeError("radistill hybrid: past_key_values must be a RadistillHybridCache (or None)")
        if cache is None and use_cache:
            cache = RadistillHybridCache(self.config.num_hidden_layers)
        past = cache.get_seq_length() if cache is not None else 0
        S = past + T
        device = h.device

        # Positions for RoPE: given, else from the padding mask (left padding), else past..past+T-1.
        if position_ids is None:
            if attention_mask is not None:
                position_ids = attention_mask.long().cumsum(-1) - 1
                position_ids = position_ids.masked_fill(attention_mask == 0, 1)[:, -T:]
            else:
                position_ids = torch.arange(past, S, device=device).unsqueeze(0).expand(Bsz, T)
        inv_freq = rope_inv_freq(self.config, device=device)
        freqs = position_ids.to(device).float().unsqueeze(-1) * inv_freq  # [B, T, D/2]
        emb = torch.cat([freqs, freqs], dim=-1)
        cos, sin = emb.cos().to(h.dtype), emb.sin().to(h.dtype)

        # Attention mask [B, 1, T, S] over cache slots: causal, the sliding window, padding.
        q_pos = torch.arange(past, S, device=device).unsqueeze(1)
        k_pos = torch.arange(0, S, device=device).unsqueeze(0)
        allowed = k_pos <= q_pos
        window = self.config.effective_sliding_window()
        if window > 0:
            allowed = allowed & (k_pos > q_pos - window)
        attn_mask = allowed[None, None].expand(Bsz, 1, T, S)
        token_mask = None
        if attention_mask is not None:
            am = attention_mask.to(device).bool()
            if am.shape[-1] != S:
                raise ValueError(f"radistill hybrid: attention_mask covers {am.shape[-1]} tokens, expected {S}")
            attn_mask = attn_mask & am[:, None, None, :]
            if not bool(am.all()):
                token_mask = am[:, -T:]

        all_hidden = () if output_hidden_states else None
        for layer in self.layers:
            if output_hidden_states:
                all_hidden += (h,)
            h = layer(h, cos, sin, attn_mask, cache, token_mask)
        h = self.norm(h)
        if output_hidden_states:
            all_hidden += (h,)
        if cache is not None:
            cache._seen_tokens += T
        if not return_dict:
            return tuple(v for v in (h, cache, all_hidden) if v is not None)
        return BaseModelOutputWithPast(last_hidden_state=h, past_key_values=cache, hidden_states=all_hidden)


class RadistillHybridForCausalLM(RadistillHybridPreTrainedModel, GenerationMixin):
    _tied_weights_keys = ["lm_head.weight"]

    def __init__(self, config: RadistillHybridConfig):
        super().__init__(config)
        self.model = RadistillHybridModel(config)
        self.vocab_size = config.vocab_size
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def get_input_embeddings(self):
        return self.model.embed_tokens

    def set_input_embeddings(self, value):
        self.model.embed_tokens = value

    def get_output_embeddings(self):
        return self.lm_head

    def set_output_embeddings(self, new_embeddings):
        self.lm_head = new_embeddings

    def get_decoder(self):
        return self.model

    def forward(
        self,
        input_ids: Optional[torch.LongTensor] = None,
        attention_mask: Optional[torch.Tensor] = None,
        position_ids: Optional[torch.LongTensor] = None,
        past_key_values: Optional[RadistillHybridCache] = None,
        inputs_embeds: Optional[torch.FloatTensor] = None,
        labels: Optional[torch.LongTensor] = None,
        use_cache: Optional[bool] = None,
        output_attentions: Optional[bool] = None,
        output_hidden_states: Optional[bool] = None,
        return_dict: Optional[bool] = None,
        cache_position: Optional[torch.LongTensor] = None,
        num_logits_to_keep: int = 0,
        **kwargs,
    ) -> Union[Tuple, CausalLMOutputWithPast]:
        return_dict = return_dict if return_dict is not None else self.config.use_return_dict
        out = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=past_key_values,
            inputs_embeds=inputs_embeds,
            use_cache=use_cache,
            output_hidden_states=output_hidden_states,
            return_dict=True,
        )
        h = out.last_hidden_state
        if num_logits_to_keep:
            h = h[:, -num_logits_to_keep:]
        logits = self.lm_head(h).float()
        loss = None
        if labels is not None:
            loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1).to(logits.device),
                                   ignore_index=-100)
        if not return_dict:
            rest = tuple(v for v in (logits, out.past_key_values, out.hidden_states) if v is not None)
            return (loss,) + rest if loss is not None else rest
        return CausalLMOutputWithPast(loss=loss, logits=logits, past_key_values=out.past_key_values,
                                      hidden_states=out.hidden_states)

    def prepare_inputs_for_generation(self, input_ids, past_key_values=None, attention_mask=None, inputs_embeds=None,
                                      position_ids=None, use_cache=True, num_logits_to_keep=None, **kwargs):
        past = past_key_values.get_seq_length() if past_key_values is not None else 0
        if past > 0:
            input_ids = input_ids[:, past:]
        if attention_mask is not None and position_ids is None:
            position_ids = attention_mask.long().cumsum(-1) - 1
            position_ids = position_ids.masked_fill(attention_mask == 0, 1)[:, -input_ids.shape[1]:]
        inputs = {
            "past_key_values": past_key_values,
            "attention_mask": attention_mask,
            "position_ids": position_ids,
            "use_cache": use_cache,
        }
        if inputs_embeds is not None and past == 0:
            inputs["inputs_embeds"] = inputs_embeds
        else:
            inputs["input_ids"] = input_ids.contiguous()
        if num_logits_to_keep is not None:
            inputs["num_logits_to_keep"] = num_logits_to_keep
        return inputs

    @staticmethod
    def _reorder_cache(past_key_values, beam_idx):
        return past_key_values.reorder_cache(beam_idx)

