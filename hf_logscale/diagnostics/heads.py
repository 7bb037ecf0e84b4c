"""Per-head gaps at the training length: how sharply each head attends to its top key, and the critical slope that
keeps that sharpness as n grows (derivation: docs/theory.md, "each head has its own critical slope").

For a causal row with logits z over its visible keys, top key z_1 and the others z_2 … z_n:
- G = z_1 − Σ_{j≥2} w_j z_j, w = softmax of the others (the gap that sets the slope),
- Δ = z_1 − ln mean_{j≥2} e^{z_j} (the gap that sets the top key's log-odds, Δ − ln(n − 1)),
- p_top = softmax(z)_1, and the top key's log-odds ln(p_top / (1 − p_top)) = z_1 − ln Σ_{j≥2} e^{z_j};
τ_c = ln L / G. Rows are the last ``rows`` queries of each window (they see about L keys); a head's value is the
median over rows and windows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import UserError
from ..patching import applied, patch_state
from ..patching.families import layer_window
from ..tables import Table
from ..variants import recipe_text

__all__ = ["TAU_MAX", "HeadGaps", "head_gaps", "heads_csv", "heads_table", "row_gaps"]

TAU_MAX = 100.0  # the critical scheme's upper bound: a head with G ≤ ln L / 100 (no top key) gets it


@dataclass(frozen=True)
class HeadGaps:
    """Medians per [layer, head] over the measured rows, at ``n`` keys (the rows' mean)."""

    G: torch.Tensor
    delta: torch.Tensor
    p_top: torch.Tensor
    logodds: torch.Tensor
    n: float
    rows: int
    layers: tuple[int, ...]  # the model's layer index of each row of the tensors

    def recipe(self, train_len: int, description: str, rope: Any = None) -> str:
        """A recipe (TOML): the critical scheme with each head's τ_c (capped at ``TAU_MAX``), per layer; ``rope``
        (a ``RopeSetting``, the one measured under) becomes its [rope] table."""
        tau = self.tau_c(train_len).clamp(max=TAU_MAX)
        per_layer = {layer: {"tau": tau[row].tolist()} for row, layer in enumerate(self.layers)}
        return recipe_text(description, {"scheme": "critical", "train_len": train_len}, per_layer, rope)

    def tau_c(self, train_len: int) -> torch.Tensor:
        """ln L / G (inf where G ≤ 0: no top key stands out)."""
        g = self.G.clamp(min=0.0)
        return torch.where(g > 0, math.log(train_len) / g, torch.full_like(g, math.inf))


def row_gaps(
    query: torch.Tensor,
    key: torch.Tensor,
    scaling: float,
    rows: int,
    window: int | None = None,
    softcap: float | None = None,
):
    """(G, Δ, p_top, log-odds), each [B, H, rows], and the keys each row sees [rows], for the last ``rows`` causal
    rows of ``query`` [B, H, T, D] against ``key`` [B, Hkv, T, D]; float64. ``softcap``: the logits the model
    uses are c·tanh(z / c) (Gemma 2)."""
    b, h, t, _ = query.shape
    q = query[:, :, t - rows :].double()
    k = key.double().repeat_interleave(h // key.shape[1], dim=1)
    z = (q @ k.transpose(-1, -2)) * scaling  # [B, H, rows, T]
    if softcap:
        z = softcap * torch.tanh(z / softcap)
    qpos = torch.arange(t - rows, t, device=z.device)[:, None]
    kpos = torch.arange(t, device=z.device)[None, :]
    visible = kpos <= qpos
    if window is not None:
        visible &= kpos > qpos - window
    z = z.masked_fill(~visible, -math.inf)
    top, arg = z.max(-1, keepdim=True)
    others = z.scatter(-1, arg, -math.inf)
    seen = visible.sum(-1).to(torch.float64)  # [rows]
    log_rest = torch.logsumexp(others, -1)
    lme = log_rest - torch.log(seen - 1)
    w = torch.softmax(others, -1)
    mean_w = (w * others.masked_fill(w == 0, 0.0)).sum(-1)
    p_top = torch.softmax(z, -1).gather(-1, arg)[..., 0]
    return top[..., 0] - mean_w, top[..., 0] - lme, p_top, top[..., 0] - log_rest, seen


@torch.no_grad()
def head_gaps(model: Any, windows: torch.Tensor, rows: int = 16, variant: Any = "none") -> HeadGaps:
    """Gaps per layer and head over ``windows`` [N, T] (one forward each; an unpatched model gets the identity
    scheme so that its queries and keys can be observed, bit-identical)."""
    if windows.ndim != 2 or windows.shape[1] <= rows:
        raise ValueError(f"`windows` must be [N, T] with T > rows = {rows}, got {tuple(windows.shape)}")
    found: dict[int, list[torch.Tensor]] = {}
    seen_n: list[torch.Tensor] = []

    def observe(layer: int, module, query, key, kwargs) -> None:
        scaling = kwargs.get("scaling", getattr(module, "scaling", query.shape[-1] ** -0.5))
        if kwargs.get("s_aux") is not None:
            raise UserError(
                "heads: this model's attention sinks (gpt-oss) join every row's softmax; the per-head law counts "
                "keys only and does not model a sink, so no τ_c is given for it"
            )
        g, d, p, odds, seen = row_gaps(query, key, scaling, rows, layer_window(module), kwargs.get("softcap"))
        found.setdefault(layer, []).append(torch.stack([g, d, p, odds]).cpu())  # [4, B, H, rows]
        seen_n.append(seen.cpu())

    with applied(model, variant, wrapper=True):
        state = patch_state(model).scale
        state.observer = observe
        try:
            device = model.get_input_embeddings().weight.device
            for window in windows:
                model(input_ids=window[None].to(device), use_cache=False)
        finally:
            state.observer = None
    # [layers, 4, heads, all rows]
    stacked = torch.stack([torch.cat(found[i], 1).permute(0, 2, 1, 3).flatten(2) for i in sorted(found)])
    med = stacked.median(-1).values
    if torch.isnan(med).any():
        raise ValueError("non-finite attention logits: the gaps are NaN (check the model's weights and variant)")
    n = float(torch.cat(seen_n).mean())
    return HeadGaps(med[:, 0], med[:, 1], med[:, 2], med[:, 3], n, stacked.shape[-1], tuple(sorted(found)))


def heads_table(gaps: HeadGaps, train_len: int) -> Table:
    """Per layer: the heads' median G, top weight and τ_c, and τ_c's range over the heads."""
    tau = gaps.tau_c(train_len)
    table = Table(
        f"Per-head gaps at L = {train_len}, n ≈ {gaps.n:.0f} keys: medians over heads; τ_c = ln L / G (logn: τ = 1)",
        ["layer", "G", "p_top", "τ_c", "τ_c range"],
        text_columns=0,
    )
    for row, layer in enumerate(gaps.layers):
        t = tau[row]
        table.rows.append(
            [
                str(layer),
                f"{gaps.G[row].median():.2f}",
                f"{gaps.p_top[row].median():.3f}",
                f"{t.median():.2f}",
                f"{t.min():.2f} – {t.max():.2f}",
            ]
        )
    return table


def heads_csv(gaps: HeadGaps, train_len: int) -> str:
    tau = gaps.tau_c(train_len)
    lines = ["layer,head,G,delta,p_top,logodds,tau_c"]
    for row, layer in enumerate(gaps.layers):
        for head in range(tau.shape[1]):
            values = (gaps.G, gaps.delta, gaps.p_top, gaps.logodds, tau)
            lines.append(f"{layer},{head}," + ",".join(f"{v[row, head].item():.6g}" for v in values))
    return "\n".join(lines) + "\n"
