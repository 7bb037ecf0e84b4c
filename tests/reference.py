"""An independent float64 forward pass for every supported family, written from the architectures' definitions.

It shares no code with hf_logscale or transformers' modeling files: weights are read from the module tree and
every step is spelled out:

- embeddings, times √hidden rounded to the model's dtype (Gemma 2/3) or embedding_multiplier (Granite);
- norms: RMSNorm with weight (Llama and most), with 1 + weight (Gemma 2/3), or mean-centred LayerNorm without
  bias (Cohere2); q/k norms per head (Qwen3, Gemma 3) or over all heads' q and k before the split (OLMo 2/3);
- where the norms sit around each branch (one layout per family: pre-norm, Gemma's pre and post norms, OLMo's
  post-norms, GLM-4's extra post norms, Cohere2's parallel attention + MLP on one LayerNorm) and Granite's
  residual_multiplier on each branch;
- q, k, v from separate or fused (Phi-3 qkv_proj) projections, with bias where the checkpoint has one;
- RoPE with its default / linear / llama3 / yarn / longrope / proportional frequencies and attention factor, per
  layer type where the config gives one set per type (Gemma 3, OLMo 3); rotate-half pairs (i, i + R/2) or
  interleaved pairs (2i, 2i + 1) (GLM, Cohere2); only the first partial_rotary_factor of each head rotating (Phi-3,
  GLM); NoPE layers (SmolLM3's no_rope_layers, Cohere2's global layers);
- GQA attention with an explicit causal / padding / sliding-window mask, scaled by 1/√d, query_pre_attn_scalar^-½
  (Gemma) or attention_multiplier (Granite); Gemma 2's tanh soft cap on the logits; gpt-oss's per-head sink logit
  that joins each row's softmax and is then dropped;
- SwiGLU or gelu-tanh gated MLP (separate or fused gate_up_proj), mixture-of-experts MLPs (Mixtral / Qwen top-k,
  Qwen2-MoE's shared expert, gpt-oss's top-k softmax router and clamped SwiGLU with biases);
- the output head: Granite's logits_scaling, Cohere2's logit_scale, Gemma's final soft cap.

An image-text model (Gemma 3 4B and up) is read through its language model, for text-only input.

The β_n scale is applied to each attention row's logits, with n counted from that row's mask (windows included).
It multiplies the query, so it acts on the scaled logits before any soft cap, and never on gpt-oss's sink logit.
An architecture's own length scale (Ministral 3's llama_4_scaling_beta) is applied from the row's position when
``native`` is true.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

MOE = ("mixtral", "qwen2_moe", "qwen3_moe")
GEMMA = ("gemma2", "gemma3_text")  # RMSNorm with 1 + weight, embeddings × √hidden, query_pre_attn_scalar
GRANITE = ("granite",)
LAYERNORM = ("cohere2",)
PARALLEL = ("cohere2",)  # attention and MLP read one normed input; both add to the residual
WHOLE_QK_NORM = ("olmo2", "olmo3")  # q_norm / k_norm over all heads' projections, before the split into heads
INTERLEAVED_ROPE = ("cohere2", "glm", "glm4")  # RoPE pairs (2i, 2i + 1) instead of (i, i + R/2)
# the sliding window on every layer
WINDOW_EVERY_LAYER = ("mistral", "mixtral", "ministral3", "qwen3_moe", "phi3")
# the sliding window on the layers that layer_types names "sliding_attention"
WINDOW_BY_LAYER_TYPE = ("gemma2", "gemma3_text", "gpt_oss", "cohere2", "olmo3")
# (legacy 4.x) rope_scaling applies to the global layers only; the sliding layers use the default frequencies
GLOBAL_ONLY_ROPE_SCALING = ("gemma3_text", "olmo3")

# The norms around each branch, by module name: (before attention, after attention, before MLP, after MLP)
PRE_NORM = ("input_layernorm", None, "post_attention_layernorm", None)
SANDWICH = ("input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm", "post_feedforward_layernorm")
POST_NORM = (None, "post_attention_layernorm", None, "post_feedforward_layernorm")
LAYOUTS = {
    "gemma2": SANDWICH,
    "gemma3_text": SANDWICH,
    "olmo2": POST_NORM,
    "olmo3": POST_NORM,
    "glm4": ("input_layernorm", "post_self_attn_layernorm", "post_attention_layernorm", "post_mlp_layernorm"),
    "cohere2": ("input_layernorm", None, None, None),  # parallel: the MLP reads the attention's normed input
}


# ---- small steps -----------------------------------------------------------------------------------------------


def _rms(x, w, eps):
    return w * (x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def _layernorm(x, w, eps):
    """LayerNorm without bias: (x - mean) / √(var + eps) · w."""
    return _rms(x - x.mean(-1, keepdim=True), w, eps)


def _softcap(x, cap):
    """cap · tanh(x / cap): smooth clip to (-cap, cap) (Gemma 2)."""
    return cap * torch.tanh(x / cap)


def _weight(lin):
    return lin.weight.detach().double()


def _linear(x, lin):
    y = x @ _weight(lin).T
    return y + lin.bias.detach().double() if getattr(lin, "bias", None) is not None else y


def _eps(cfg) -> float:
    return cfg.layer_norm_eps if cfg.model_type in LAYERNORM else cfg.rms_norm_eps


def _norm(cfg, module, x):
    """The family's norm with ``module``'s weight."""
    w = _weight(module)
    if cfg.model_type in LAYERNORM:
        return _layernorm(x, w, _eps(cfg))
    return _rms(x, 1.0 + w if cfg.model_type in GEMMA else w, _eps(cfg))


def _activation(cfg) -> Callable[[torch.Tensor], torch.Tensor]:
    name = getattr(cfg, "hidden_activation", None) or cfg.hidden_act  # Gemma names it hidden_activation
    if name == "silu":
        return lambda g: g * torch.sigmoid(g)
    if name == "gelu_pytorch_tanh":  # GELU, tanh approximation
        return lambda g: 0.5 * g * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (g + 0.044715 * g.pow(3))))
    raise NotImplementedError(f"reference activation {name!r}")


# ---- RoPE ------------------------------------------------------------------------------------------------------


def _layer_type(cfg, layer: int) -> str:
    types = getattr(cfg, "layer_types", None)
    return types[layer] if types else "full_attention"


def _rope_dict(cfg, layer_type: str | None = None) -> dict:
    """RoPE settings as one flat dict (for ``layer_type`` where they differ per type). transformers 5 keeps them in
    rope_parameters, flat or one dict per layer type (Gemma 3, OLMo 3); 4.x in rope_theta + rope_scaling, with
    partial_rotary_factor at the top level, Gemma 3's local base in rope_local_base_freq and the scaling on the
    global layers only."""
    params = getattr(cfg, "rope_parameters", None)
    if isinstance(params, dict) and params:
        if isinstance(params.get(layer_type), dict):
            return dict(params[layer_type])
        return dict(params)
    scaling = dict(getattr(cfg, "rope_scaling", None) or {})
    r = {"rope_theta": getattr(cfg, "rope_theta", 10000.0), **scaling}
    if getattr(cfg, "partial_rotary_factor", None) is not None:
        r.setdefault("partial_rotary_factor", cfg.partial_rotary_factor)
    if layer_type == "sliding_attention" and cfg.model_type in GLOBAL_ONLY_ROPE_SCALING:
        return {"rope_type": "default", "rope_theta": getattr(cfg, "rope_local_base_freq", r["rope_theta"])}
    original = getattr(cfg, "original_max_position_embeddings", None)
    if r.get("rope_type", r.get("type")) == "longrope" and original:
        # Phi-3 on 4.x: the original length from the top level, and always factor = max / original
        r.update(original_max_position_embeddings=original, factor=cfg.max_position_embeddings / original)
    return r


def _inv_freq(cfg, r: dict, head_dim: int, seq_len: int) -> tuple[torch.Tensor, float]:
    """Inverse frequencies [R / 2] for the R = partial_rotary_factor·head_dim rotating dims, and the factor on
    cos/sin, per rope type (Su et al.; Llama 3.1; YaRN; LongRoPE). ``seq_len`` (the forward's largest position + 1)
    picks LongRoPE's short or long factors."""
    kind = r.get("rope_type", r.get("type", "default"))
    theta = float(r["rope_theta"])
    if kind == "proportional":  # the first fraction·dim/2 (highest) frequencies rotate, the rest are zero
        i = torch.arange(0, head_dim, 2, dtype=torch.float64)
        inv = 1.0 / theta ** (i / head_dim)
        rotating = int(r.get("partial_rotary_factor", 1.0) * head_dim // 2)
        return torch.cat([inv[:rotating], torch.zeros(head_dim // 2 - rotating, dtype=torch.float64)]) / r.get(
            "factor", 1.0
        ), 1.0
    dim = int(head_dim * r.get("partial_rotary_factor", 1.0))
    i = torch.arange(0, dim, 2, dtype=torch.float64)
    inv = 1.0 / theta ** (i / dim)
    if kind in ("default", None):
        return inv, 1.0
    if kind == "longrope":  # LongRoPE (Ding et al. 2024): per-frequency factors, short or long for the whole pass
        orig = r["original_max_position_embeddings"]
        factor = r.get("factor") or cfg.max_position_embeddings / orig
        af = r.get("attention_factor")
        if af is None:
            af = math.sqrt(1 + math.log(factor) / math.log(orig)) if factor > 1 else 1.0
        ext = r["long_factor"] if seq_len > orig else r["short_factor"]
        return inv / torch.tensor(ext, dtype=torch.float64), float(af)
    factor = float(r["factor"])
    if kind == "linear":
        return inv / factor, 1.0
    if kind == "llama3":  # wavelengths beyond orig/low are divided by factor, below orig/high kept, blended between
        orig, lo, hi = r["original_max_position_embeddings"], r["low_freq_factor"], r["high_freq_factor"]
        wavelen = 2 * math.pi / inv
        smooth = ((orig / wavelen - lo) / (hi - lo)).clamp(0.0, 1.0)
        return (1 - smooth) * inv / factor + smooth * inv, 1.0
    if kind == "yarn":  # YaRN (Peng et al. 2023): ramp between interpolated and extrapolated frequencies
        orig = r["original_max_position_embeddings"]
        fast, slow = r.get("beta_fast") or 32.0, r.get("beta_slow") or 1.0

        def dim_of(rotations):
            return dim * math.log(orig / (rotations * 2 * math.pi)) / (2 * math.log(theta))

        low, high = dim_of(fast), dim_of(slow)
        if r.get("truncate", True):
            low, high = math.floor(low), math.ceil(high)
        low, high = max(low, 0), min(high, dim - 1)
        if low == high:
            high += 0.001
        ramp = ((torch.arange(dim // 2, dtype=torch.float64) - low) / (high - low)).clamp(0, 1)
        inv = (inv / factor) * ramp + inv * (1 - ramp)

        def mscale(m):
            return 0.1 * m * math.log(factor) + 1.0 if factor > 1 else 1.0

        af = r.get("attention_factor")
        if af is None and r.get("mscale") and r.get("mscale_all_dim"):
            af = mscale(r["mscale"]) / mscale(r["mscale_all_dim"])
        return inv, float(af if af is not None else mscale(1))
    raise NotImplementedError(f"reference RoPE for {kind!r}")


def _rope(x, pos, inv, af, interleaved: bool = False):
    """x [B, T, H, D]; pos [B, T]; the first R = 2·len(inv) dims rotate, the rest pass unchanged. Pairs are
    (i, i + R/2) (rotate-half) or, ``interleaved``, (2i, 2i + 1)."""
    R = 2 * inv.shape[0]
    ang = pos[..., None].double() * inv  # [B, T, R/2]
    cos, sin = ang.cos()[:, :, None] * af, ang.sin()[:, :, None] * af  # [B, T, 1, R/2]
    rot, rest = x[..., :R], x[..., R:]
    if interleaved:
        x1, x2 = rot[..., 0::2], rot[..., 1::2]
        out = torch.stack([x1 * cos - x2 * sin, x2 * cos + x1 * sin], -1).flatten(-2)
    else:
        x1, x2 = rot[..., : R // 2], rot[..., R // 2 :]
        out = torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], -1)
    return torch.cat([out, rest], -1)


def _window(cfg, layer: int) -> int | None:
    mt = cfg.model_type
    if mt in WINDOW_EVERY_LAYER:
        return getattr(cfg, "sliding_window", None) or None
    if mt in WINDOW_BY_LAYER_TYPE:
        return cfg.sliding_window if _layer_type(cfg, layer) == "sliding_attention" else None
    if mt in ("qwen2", "qwen3", "qwen2_moe", "smollm3", "ministral"):
        types = getattr(cfg, "layer_types", None)
        if types is not None:
            return cfg.sliding_window if types[layer] == "sliding_attention" else None
        if getattr(cfg, "use_sliding_window", False) and layer >= cfg.max_window_layers:
            return cfg.sliding_window
    return None


def _uses_rope(cfg, layer: int) -> bool:
    if cfg.model_type == "cohere2":  # RoPE on the sliding layers; the global layers are NoPE
        return _window(cfg, layer) is not None
    flags = getattr(cfg, "no_rope_layers", None)  # SmolLM3: 1 = RoPE, 0 = NoPE
    return True if flags is None else bool(flags[layer])


def _native(cfg, pos):
    """Ministral 3 multiplies the query by 1 + β·ln(1 + ⌊pos / L0⌋) (β = 0 or absent: 1)."""
    r = _rope_dict(cfg)
    beta = r.get("llama_4_scaling_beta") if cfg.model_type == "ministral3" else None
    if not beta:
        return torch.ones_like(pos, dtype=torch.float64)
    return 1.0 + beta * torch.log1p(torch.floor(pos.double() / r["original_max_position_embeddings"]))


# ---- MLPs ------------------------------------------------------------------------------------------------------


def _swiglu(x, gate, up, down):
    g = x @ gate.T
    return ((g * torch.sigmoid(g)) * (x @ up.T)) @ down.T


def _dense_mlp(cfg, mlp, x):
    """down(act(gate(x)) · up(x)); Phi-3 and GLM fuse gate and up into one projection, gate first."""
    if hasattr(mlp, "gate_up_proj"):
        gate, up = _linear(x, mlp.gate_up_proj).chunk(2, dim=-1)
    else:
        gate, up = _linear(x, mlp.gate_proj), _linear(x, mlp.up_proj)
    return _linear(_activation(cfg)(gate) * up, mlp.down_proj)


def _experts(block) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """(gate [I, H], up [I, H], down [H, I]) per expert: fused 3-D parameters (transformers 5) or a module list."""
    e = block.experts
    if hasattr(e, "gate_up_proj"):
        gu, dn = e.gate_up_proj.detach().double(), e.down_proj.detach().double()
        return [(*gu[k].chunk(2, dim=0), dn[k]) for k in range(gu.shape[0])]
    out = []
    for m in e:
        if hasattr(m, "w1"):  # Mixtral, transformers 4.x
            out.append((m.w1.weight, m.w3.weight, m.w2.weight))
        else:
            out.append((m.gate_proj.weight, m.up_proj.weight, m.down_proj.weight))
    return [tuple(w.detach().double() for w in t) for t in out]


def _moe(cfg, block, x):
    """Top-k routing over softmax(router logits); Mixtral always, Qwen when norm_topk_prob, renormalise the k
    weights; Qwen2-MoE adds a sigmoid-gated shared expert."""
    shape = x.shape
    x = x.reshape(-1, shape[-1])
    probs = torch.softmax(x @ block.gate.weight.detach().double().T, -1)
    weights, chosen = probs.topk(cfg.num_experts_per_tok, dim=-1)
    if cfg.model_type == "mixtral" or getattr(cfg, "norm_topk_prob", False):
        weights = weights / weights.sum(-1, keepdim=True)
    experts = _experts(block)
    out = torch.zeros_like(x)
    for t in range(x.shape[0]):
        for w, k in zip(weights[t].tolist(), chosen[t].tolist(), strict=True):
            out[t] += w * _swiglu(x[t], *experts[k])
    if hasattr(block, "shared_expert"):
        s = block.shared_expert
        shared = _swiglu(x, *(m.weight.detach().double() for m in (s.gate_proj, s.up_proj, s.down_proj)))
        out = out + torch.sigmoid(x @ block.shared_expert_gate.weight.detach().double().T) * shared
    return out.reshape(shape)


def _gpt_oss_moe(cfg, block, x):
    """gpt-oss: router logits x·Wᵀ + b, the top k softmax-normalised over the k selected logits. Expert e maps x to
    x·A_e + a_e (A_e [H, 2I]: even columns gate, odd columns up), clamps gate ≤ limit and up to ±limit, and
    returns ((up + 1) · gate · σ(α·gate))·B_e + b_e."""
    shape = x.shape
    x = x.reshape(-1, shape[-1])
    top, chosen = _linear(x, block.router).topk(cfg.num_experts_per_tok, dim=-1)
    weights = torch.softmax(top, -1)
    e = block.experts
    A, a = e.gate_up_proj.detach().double(), e.gate_up_proj_bias.detach().double()
    Bm, b = e.down_proj.detach().double(), e.down_proj_bias.detach().double()
    alpha, limit = getattr(cfg, "swiglu_alpha", 1.702), getattr(cfg, "swiglu_limit", 7.0)  # fixed in 4.x
    out = torch.zeros_like(x)
    for t in range(x.shape[0]):
        for w, k in zip(weights[t].tolist(), chosen[t].tolist(), strict=True):
            gu = x[t] @ A[k] + a[k]
            gate, up = gu[0::2].clamp(max=limit), gu[1::2].clamp(-limit, limit)
            out[t] += w * (((up + 1) * gate * torch.sigmoid(alpha * gate)) @ Bm[k] + b[k])
    return out.reshape(shape)


def _is_sparse(cfg, layer: int) -> bool:
    if cfg.model_type == "mixtral":
        return True
    if cfg.model_type in MOE:
        return layer not in (getattr(cfg, "mlp_only_layers", None) or []) and (layer + 1) % cfg.decoder_sparse_step == 0
    return False


def _mlp(cfg, layer, li: int, x):
    mlp = getattr(layer, "mlp", None) or layer.block_sparse_moe
    if cfg.model_type == "gpt_oss":
        return _gpt_oss_moe(cfg, mlp, x)
    if _is_sparse(cfg, li):
        return _moe(cfg, mlp, x)
    return _dense_mlp(cfg, mlp, x)


# ---- attention -------------------------------------------------------------------------------------------------


def _qkv(cfg, att, x, H: int, KV: int, D: int):
    """q [B, T, H, D], k and v [B, T, KV, D] before RoPE, with the family's q/k norms."""
    B, T, _ = x.shape
    if hasattr(att, "qkv_proj"):  # Phi-3: one fused projection, q | k | v
        q, k, v = _linear(x, att.qkv_proj).split([H * D, KV * D, KV * D], dim=-1)
    else:
        q, k, v = _linear(x, att.q_proj), _linear(x, att.k_proj), _linear(x, att.v_proj)
    if cfg.model_type in WHOLE_QK_NORM:
        q, k = _norm(cfg, att.q_norm, q), _norm(cfg, att.k_norm, k)
    q, k, v = q.view(B, T, H, D), k.view(B, T, KV, D), v.view(B, T, KV, D)
    if hasattr(att, "q_norm") and cfg.model_type not in WHOLE_QK_NORM:  # per head (Qwen3, Gemma 3)
        q, k = _norm(cfg, att.q_norm, q), _norm(cfg, att.k_norm, k)
    return q, k, v


def _scaling(cfg, D: int) -> float:
    if cfg.model_type in GEMMA:
        return cfg.query_pre_attn_scalar**-0.5
    if cfg.model_type in GRANITE:
        return cfg.attention_multiplier
    return 1.0 / math.sqrt(D)


def _row_scales(fn, n: torch.Tensor, active: bool, H: int) -> torch.Tensor:
    """s(n) per row, or per row and head when ``fn`` returns one value per head: [B, T, H] (1 where inactive or
    the row sees no key)."""
    return torch.tensor(
        [[_per_head(fn(int(c)) if active and c > 0 else 1.0, H) for c in row] for row in n.tolist()],
        dtype=torch.float64,
    )


def _per_head(value: float | Sequence[float], heads: int) -> list[float]:
    if isinstance(value, (list, tuple)):
        assert len(value) == heads, (len(value), heads)
        return [float(v) for v in value]
    return [float(value)] * heads


# ---- the forward -----------------------------------------------------------------------------------------------


def _embed(cfg, dec, input_ids):
    weight = dec.embed_tokens.weight
    h = weight.detach().double()[input_ids]
    if cfg.model_type in GEMMA:  # × √hidden, the normaliser rounded to the model's dtype first
        return h * torch.tensor(cfg.hidden_size**0.5, dtype=weight.dtype).double()
    if cfg.model_type in GRANITE:
        return h * cfg.embedding_multiplier
    return h


def _head(cfg, model, h):
    logits = h @ model.get_output_embeddings().weight.detach().double().T
    if cfg.model_type in GRANITE:
        logits = logits / cfg.logits_scaling
    if cfg.model_type == "cohere2":
        logits = logits * cfg.logit_scale
    cap = getattr(cfg, "final_logit_softcapping", None) if cfg.model_type in GEMMA else None
    return _softcap(logits, cap) if cap else logits


@torch.no_grad()
def reference_logits(
    model,
    input_ids: torch.Tensor,
    scale: Callable[[int], float] | dict[int, Callable[[int], float]] = lambda n: 1.0,
    padding_mask: torch.Tensor | None = None,
    layers: set[int] | None = None,
    native: bool = True,
    attention: dict[int, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Logits [B, T, V] in float64. ``scale(n)`` multiplies the logits of a row that sees ``n`` keys (only on
    ``layers`` if given; a dict gives each layer its own). ``padding_mask`` [B, T] marks real tokens (left
    padding). ``native``: apply the architecture's own length scale as its config states it. ``attention``: filled
    with each layer's masked attention logits [B, H, T, T] (after scale and soft cap; without gpt-oss's sink)."""
    cfg = model.config.get_text_config()  # an image-text model (Gemma 3 4B and up): its language model's
    mt = cfg.model_type
    B, T = input_ids.shape
    pm = torch.ones(B, T, dtype=torch.bool) if padding_mask is None else padding_mask.bool()
    pos = (pm.long().cumsum(-1) - 1).clamp(min=0)
    dec = getattr(model.model, "language_model", model.model)
    H, KV = cfg.num_attention_heads, cfg.num_key_value_heads
    D = getattr(cfg, "head_dim", None) or cfg.hidden_size // H
    seq_len = int(pos.max()) + 1
    row_native = _native(cfg, pos) if native else torch.ones(B, T, dtype=torch.float64)  # [B, T]
    before_attn, after_attn, before_mlp, after_mlp = LAYOUTS.get(mt, PRE_NORM)
    res = cfg.residual_multiplier if mt in GRANITE else 1.0
    softcap = getattr(cfg, "attn_logit_softcapping", None) if mt == "gemma2" else None

    h = _embed(cfg, dec, input_ids)
    idx = torch.arange(T)
    for li, layer in enumerate(dec.layers):
        att = layer.self_attn
        x = _norm(cfg, getattr(layer, before_attn), h) if before_attn else h
        q, k, v = _qkv(cfg, att, x, H, KV, D)
        if _uses_rope(cfg, li):
            inv, af = _inv_freq(cfg, _rope_dict(cfg, _layer_type(cfg, li)), D, seq_len)
            q, k = _rope(q, pos, inv, af, mt in INTERLEAVED_ROPE), _rope(k, pos, inv, af, mt in INTERLEAVED_ROPE)
        k = k.repeat_interleave(H // KV, dim=2)
        v = v.repeat_interleave(H // KV, dim=2)
        visible = (idx[None, :] <= idx[:, None])[None] & pm[:, None, :]  # [B, Tq, Tk]
        w = _window(cfg, li)
        if w is not None:
            visible = visible & (idx[None, :] > idx[:, None] - w)[None]
        n = visible.sum(-1)  # [B, Tq] keys each row sees
        fn = scale.get(li, lambda c: 1.0) if isinstance(scale, dict) else scale
        s = _row_scales(fn, n, layers is None or li in layers, H)  # [B, T, H]
        logits = torch.einsum("bqhd,bkhd->bhqk", q, k) * _scaling(cfg, D)
        # s(n) multiplies the query, so the scaled logits, before Gemma 2's soft cap
        logits = logits * (s * row_native[..., None]).permute(0, 2, 1)[..., None]
        if softcap:
            logits = _softcap(logits, softcap)
        logits = logits.masked_fill(~visible[:, None], float("-inf"))
        if attention is not None:
            attention[li] = logits
        if hasattr(att, "sinks"):  # gpt-oss: a per-head logit joins each row's softmax, then is dropped (unscaled)
            sink = att.sinks.detach().double().view(1, H, 1, 1).expand(B, H, T, 1)
            probs = torch.softmax(torch.cat([logits, sink], -1), -1)[..., :-1]
        else:
            probs = torch.softmax(logits, -1).nan_to_num(0.0)
        o = torch.einsum("bhqk,bkhd->bqhd", probs, v).reshape(B, T, H * D)
        a = _linear(o, att.o_proj)
        if after_attn:
            a = _norm(cfg, getattr(layer, after_attn), a)
        if mt in PARALLEL:
            h = h + a + _mlp(cfg, layer, li, x)
            continue
        h = h + res * a
        x = _norm(cfg, getattr(layer, before_mlp), h) if before_mlp else h
        m = _mlp(cfg, layer, li, x)
        if after_mlp:
            m = _norm(cfg, getattr(layer, after_mlp), m)
        h = h + res * m
    return _head(cfg, model, _norm(cfg, dec.norm, h))


# Independent scheme formulas (Python floats), for the reference forward and the formula tests.
def ref_scale(scheme: str, L: int = 16, **p) -> Callable[[int], float]:
    if scheme == "none":
        return lambda n: 1.0
    if scheme == "logn":
        return lambda n: math.log(n, L) if n > L else 1.0
    if scheme == "critical":
        tau = p.get("tau", 1.0)
        return lambda n: max(1.0, 1.0 + tau * (math.log(n) - math.log(L)) / math.log(L))
    if scheme == "ssmax":
        tau = p.get("tau", 1.0)
        return lambda n: math.log(n) / math.log(L) if n <= L else 1.0 + tau * (math.log(n) - math.log(L)) / math.log(L)
    if scheme == "llama4":
        a, F = p.get("a", 0.1), p.get("F", 8192)
        return lambda n: 1.0 + a * math.log(n // F + 1)
    if scheme == "yarn-temp":
        f = p["f"]
        return lambda n: (0.1 * math.log(f) + 1.0) ** 2
    if scheme == "power":
        pw = p.get("p", 2.0)
        return lambda n: max(1.0, math.log(n) / math.log(L)) ** pw
    raise KeyError(scheme)
