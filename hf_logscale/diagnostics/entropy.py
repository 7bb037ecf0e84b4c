"""Attention entropy per layer, head and query position, computed blockwise from the queries and keys the attention
backend receives (with the variant's scale already on the queries) — any backend, never an n×n matrix in memory.

Row i of a causal layer sees n_i = i + 1 keys (min(i + 1, W) under a sliding window W); its entropy is
H_i = logsumexp_j(s_ij) − Σ_j p_ij s_ij with s_ij = scaling · ⟨q_i, k_j⟩ over the visible keys.
"""

from __future__ import annotations

from typing import Any

import torch

from ..patching import applied, patch_state
from ..patching.families import layer_window

__all__ = ["BLOCK_ELEMENTS", "attention_entropy", "row_entropy"]

BLOCK_ELEMENTS = 2**24  # scores per block of queries


def row_entropy(query: torch.Tensor, key: torch.Tensor, scaling: float, window: int | None = None) -> torch.Tensor:
    """Entropy [B, H, Tq] of causal attention rows; ``query`` [B, H, Tq, D] are the last Tq of ``key``'s
    [B, Hkv, Tk, D] positions. float32 (float64 for float64 inputs)."""
    dtype = torch.float64 if query.dtype == torch.float64 else torch.float32
    b, h, tq, _ = query.shape
    tk = key.shape[-2]
    key = key.to(dtype).repeat_interleave(h // key.shape[1], dim=1)
    out = torch.empty(b, h, tq, dtype=dtype, device=query.device)
    step = max(1, BLOCK_ELEMENTS // (b * h * tk))
    kpos = torch.arange(tk, device=query.device)
    for s in range(0, tq, step):
        q = query[:, :, s : s + step].to(dtype)
        scores = (q @ key.transpose(-1, -2)) * scaling  # [B, H, b, Tk]
        qpos = torch.arange(tk - tq + s, tk - tq + s + q.shape[2], device=query.device)[:, None]
        hidden = kpos[None, :] > qpos
        if window is not None:
            hidden |= kpos[None, :] <= qpos - window
        scores = scores.masked_fill(hidden, float("-inf"))
        logz = torch.logsumexp(scores, dim=-1, keepdim=True)
        p = (scores - logz).exp()
        out[:, :, s : s + step] = logz[..., 0] - (p * scores.masked_fill(hidden, 0.0)).sum(-1)
    return out


@torch.no_grad()
def attention_entropy(model: Any, input_ids: torch.Tensor, variant: Any = "none") -> torch.Tensor:
    """Entropy [layers, heads, T] of every attention row for one forward of ``input_ids`` [B, T] (mean over the
    batch) under ``variant`` (default ``none``: the model as loaded, its saved patch included; an unpatched model
    gets the identity scheme, which is bit-identical, so that its queries can be observed)."""
    rows: dict[int, torch.Tensor] = {}

    def observe(layer: int, module, query, key, kwargs) -> None:
        scaling = kwargs.get("scaling", getattr(module, "scaling", query.shape[-1] ** -0.5))
        rows[layer] = row_entropy(query, key, scaling, layer_window(module)).mean(0).cpu()

    with applied(model, variant, wrapper=True):
        state = patch_state(model).scale
        state.observer = observe
        try:
            model(input_ids=input_ids.to(model.get_input_embeddings().weight.device), use_cache=False)
        finally:
            state.observer = None
    return torch.stack([rows[i] for i in sorted(rows)])
