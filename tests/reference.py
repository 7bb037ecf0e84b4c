"""An independent float64 forward pass for the four families, written from the architectures' definitions.

It shares no code with hf_logscale or transformers' modeling files: weights are read from the module tree and
every step (RMSNorm, RoPE, GQA attention with an explicit causal / padding / sliding-window mask, SwiGLU MLP) is
spelled out. The β_n scale is applied to each attention row's logits, with n counted from that row's mask.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch


def _rms(x, w, eps):
    return w * (x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def _rope(x, pos, theta):
    # x [B, T, H, D]; pos [B, T]; rotate-half convention (first half pairs with second half)
    d = x.shape[-1]
    inv = 1.0 / theta ** (torch.arange(0, d, 2, dtype=torch.float64) / d)
    ang = pos[..., None].double() * inv  # [B, T, D/2]
    cos, sin = torch.cat([ang.cos()] * 2, -1)[:, :, None], torch.cat([ang.sin()] * 2, -1)[:, :, None]
    x1, x2 = x[..., : d // 2], x[..., d // 2 :]
    return x * cos + torch.cat([-x2, x1], -1) * sin


def _window(cfg, layer: int) -> int | None:
    mt = cfg.model_type
    if mt == "mistral":
        return getattr(cfg, "sliding_window", None)
    if mt in ("qwen2", "qwen3"):
        types = getattr(cfg, "layer_types", None)
        if types is not None:
            return cfg.sliding_window if types[layer] == "sliding_attention" else None
        if getattr(cfg, "use_sliding_window", False) and layer >= cfg.max_window_layers:
            return cfg.sliding_window
    return None


@torch.no_grad()
def reference_logits(
    model,
    input_ids: torch.Tensor,
    scale: Callable[[int], float] = lambda n: 1.0,
    padding_mask: torch.Tensor | None = None,
    layers: set[int] | None = None,
) -> torch.Tensor:
    """Logits [B, T, V] in float64. ``scale(n)`` multiplies the logits of a row that sees ``n`` keys (only on
    ``layers`` if given). ``padding_mask`` [B, T] marks real tokens (left padding)."""
    cfg = model.config
    B, T = input_ids.shape
    pm = torch.ones(B, T, dtype=torch.bool) if padding_mask is None else padding_mask.bool()
    pos = (pm.long().cumsum(-1) - 1).clamp(min=0)
    dec = model.model
    theta = (
        cfg.rope_parameters["rope_theta"]
        if hasattr(cfg, "rope_parameters") and isinstance(getattr(cfg, "rope_parameters", None), dict)
        else cfg.rope_theta
    )
    H, KV = cfg.num_attention_heads, cfg.num_key_value_heads
    D = getattr(cfg, "head_dim", None) or cfg.hidden_size // H
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
        q, k = _rope(q, pos, theta), _rope(k, pos, theta)
        k = k.repeat_interleave(H // KV, dim=2)
        v = v.repeat_interleave(H // KV, dim=2)
        visible = (idx[None, :] <= idx[:, None])[None] & pm[:, None, :]  # [B, Tq, Tk]
        w = _window(cfg, li)
        if w is not None:
            visible = visible & (idx[None, :] > idx[:, None] - w)[None]
        n = visible.sum(-1)  # [B, Tq] keys each row sees
        s = torch.tensor(
            [[scale(int(c)) if (layers is None or li in layers) and c > 0 else 1.0 for c in row] for row in n.tolist()],
            dtype=torch.float64,
        )
        logits = torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(D)
        logits = logits * s[:, None, :, None]
        logits = logits.masked_fill(~visible[:, None], float("-inf"))
        probs = torch.softmax(logits, -1).nan_to_num(0.0)
        o = torch.einsum("bhqk,bkhd->bqhd", probs, v).reshape(B, T, H * D)
        h = h + o @ W(att.o_proj).T
        x = _rms(h, W(layer.post_attention_layernorm), eps)
        mlp = layer.mlp
        g = x @ W(mlp.gate_proj).T
        h = h + ((g * torch.sigmoid(g)) * (x @ W(mlp.up_proj).T)) @ W(mlp.down_proj).T
    h = _rms(h, W(dec.norm), eps)
    return h @ model.get_output_embeddings().weight.detach().double().T


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
        return lambda n: math.log(n) / math.log(L)
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
