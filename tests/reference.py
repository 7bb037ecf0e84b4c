"""An independent float64 forward pass for every supported family, written from the architectures' definitions.

It shares no code with hf_logscale or transformers' modeling files: weights are read from the module tree and
every step (RMSNorm, RoPE with its default / llama3 / yarn / linear frequencies, NoPE layers, GQA attention with
an explicit causal / padding / sliding-window mask, SwiGLU or mixture-of-experts MLP) is spelled out. The β_n
scale is applied to each attention row's logits, with n counted from that row's mask; an architecture's own
length scale (Ministral 3's llama_4_scaling_beta) is applied from the row's position when ``native`` is true.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

MOE = ("mixtral", "qwen2_moe", "qwen3_moe")


def _rms(x, w, eps):
    return w * (x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def _rope_dict(cfg) -> dict:
    """RoPE settings as one dict: transformers 5.x keeps them in rope_parameters, 4.x in rope_theta + rope_scaling."""
    params = getattr(cfg, "rope_parameters", None)
    if isinstance(params, dict) and params:
        return dict(params)
    scaling = dict(getattr(cfg, "rope_scaling", None) or {})
    return {"rope_theta": getattr(cfg, "rope_theta", 10000.0), **scaling}


def _inv_freq(cfg, dim: int) -> tuple[torch.Tensor, float]:
    """Inverse frequencies [dim / 2] and the factor on cos/sin, per rope type (Su et al.; Llama 3.1; YaRN)."""
    r = _rope_dict(cfg)
    kind = r.get("rope_type", r.get("type", "default"))
    theta = float(r["rope_theta"])
    i = torch.arange(0, dim, 2, dtype=torch.float64)
    inv = 1.0 / theta ** (i / dim)
    if kind in ("default", None):
        return inv, 1.0
    if kind == "proportional":  # the first fraction·dim/2 (highest) frequencies rotate, the rest are zero
        rotating = int(r.get("partial_rotary_factor", 1.0) * dim // 2)
        return torch.cat([inv[:rotating], torch.zeros(dim // 2 - rotating, dtype=torch.float64)]) / r.get(
            "factor", 1.0
        ), 1.0
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


def _rope(x, pos, inv, af):
    # x [B, T, H, D]; pos [B, T]; rotate-half convention (first half pairs with second half)
    ang = pos[..., None].double() * inv  # [B, T, D/2]
    cos, sin = torch.cat([ang.cos()] * 2, -1)[:, :, None] * af, torch.cat([ang.sin()] * 2, -1)[:, :, None] * af
    d = x.shape[-1]
    x1, x2 = x[..., : d // 2], x[..., d // 2 :]
    return x * cos + torch.cat([-x2, x1], -1) * sin


def _window(cfg, layer: int) -> int | None:
    mt = cfg.model_type
    if mt in ("mistral", "mixtral", "ministral3", "qwen3_moe"):
        return getattr(cfg, "sliding_window", None) or None
    if mt in ("qwen2", "qwen3", "qwen2_moe", "smollm3", "ministral"):
        types = getattr(cfg, "layer_types", None)
        if types is not None:
            return cfg.sliding_window if types[layer] == "sliding_attention" else None
        if getattr(cfg, "use_sliding_window", False) and layer >= cfg.max_window_layers:
            return cfg.sliding_window
    return None


def _uses_rope(cfg, layer: int) -> bool:
    flags = getattr(cfg, "no_rope_layers", None)  # SmolLM3: 1 = RoPE, 0 = NoPE
    return True if flags is None else bool(flags[layer])


def _native(cfg, pos):
    """Ministral 3 multiplies the query by 1 + β·ln(1 + ⌊pos / L0⌋) (β = 0 or absent: 1)."""
    r = _rope_dict(cfg)
    beta = r.get("llama_4_scaling_beta") if cfg.model_type == "ministral3" else None
    if not beta:
        return torch.ones_like(pos, dtype=torch.float64)
    return 1.0 + beta * torch.log1p(torch.floor(pos.double() / r["original_max_position_embeddings"]))


def _swiglu(x, gate, up, down):
    g = x @ gate.T
    return ((g * torch.sigmoid(g)) * (x @ up.T)) @ down.T


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


def _is_sparse(cfg, layer: int) -> bool:
    if cfg.model_type == "mixtral":
        return True
    if cfg.model_type in MOE:
        return layer not in (getattr(cfg, "mlp_only_layers", None) or []) and (layer + 1) % cfg.decoder_sparse_step == 0
    return False


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
    with each layer's masked attention logits [B, H, T, T]."""
    cfg = model.config
    assert cfg.hidden_act == "silu", cfg.hidden_act
    B, T = input_ids.shape
    pm = torch.ones(B, T, dtype=torch.bool) if padding_mask is None else padding_mask.bool()
    pos = (pm.long().cumsum(-1) - 1).clamp(min=0)
    dec = model.model
    H, KV = cfg.num_attention_heads, cfg.num_key_value_heads
    D = getattr(cfg, "head_dim", None) or cfg.hidden_size // H
    inv, af = _inv_freq(cfg, D)
    row_native = _native(cfg, pos) if native else torch.ones(B, T, dtype=torch.float64)  # [B, T]
    eps = cfg.rms_norm_eps
    W = lambda lin: lin.weight.detach().double()  # noqa: E731
    bias = lambda lin: lin.bias.detach().double() if lin.bias is not None else 0.0  # noqa: E731

    h = dec.embed_tokens.weight.detach().double()[input_ids]
    idx = torch.arange(T)
    for li, layer in enumerate(dec.layers):
        att = layer.self_attn
        x = _rms(h, W(layer.input_layernorm), eps)
        q = (x @ W(att.q_proj).T + bias(att.q_proj)).view(B, T, H, D)
        k = (x @ W(att.k_proj).T + bias(att.k_proj)).view(B, T, KV, D)
        v = (x @ W(att.v_proj).T + bias(att.v_proj)).view(B, T, KV, D)
        if hasattr(att, "q_norm"):
            q, k = _rms(q, W(att.q_norm), eps), _rms(k, W(att.k_norm), eps)
        if _uses_rope(cfg, li):
            q, k = _rope(q, pos, inv, af), _rope(k, pos, inv, af)
        k = k.repeat_interleave(H // KV, dim=2)
        v = v.repeat_interleave(H // KV, dim=2)
        visible = (idx[None, :] <= idx[:, None])[None] & pm[:, None, :]  # [B, Tq, Tk]
        w = _window(cfg, li)
        if w is not None:
            visible = visible & (idx[None, :] > idx[:, None] - w)[None]
        n = visible.sum(-1)  # [B, Tq] keys each row sees
        fn = scale.get(li, lambda c: 1.0) if isinstance(scale, dict) else scale
        # s(n) per row, or per row and head when ``fn`` returns one value per head: [B, T, H]
        s = torch.tensor(
            [
                [_per_head(fn(int(c)) if (layers is None or li in layers) and c > 0 else 1.0, H) for c in row]
                for row in n.tolist()
            ],
            dtype=torch.float64,
        )
        logits = torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(D)
        logits = logits * (s * row_native[..., None]).permute(0, 2, 1)[..., None]
        logits = logits.masked_fill(~visible[:, None], float("-inf"))
        if attention is not None:
            attention[li] = logits
        probs = torch.softmax(logits, -1).nan_to_num(0.0)
        o = torch.einsum("bhqk,bkhd->bqhd", probs, v).reshape(B, T, H * D)
        h = h + o @ W(att.o_proj).T
        x = _rms(h, W(layer.post_attention_layernorm), eps)
        mlp = getattr(layer, "mlp", None) or layer.block_sparse_moe
        if _is_sparse(cfg, li):
            h = h + _moe(cfg, mlp, x)
        else:
            h = h + _swiglu(x, W(mlp.gate_proj), W(mlp.up_proj), W(mlp.down_proj))
    h = _rms(h, W(dec.norm), eps)
    return h @ model.get_output_embeddings().weight.detach().double().T


def _per_head(value: float | Sequence[float], heads: int) -> list[float]:
    if isinstance(value, (list, tuple)):
        assert len(value) == heads, (len(value), heads)
        return [float(v) for v in value]
    return [float(value)] * heads


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
