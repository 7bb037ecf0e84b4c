"""The paper's attention layer (paper.md §1) and its metrics, batched over a grid of γ for one token set.

y_i = x_i/|x_i|; A = rowsoftmax(β Y Yᵀ) with β = γ ln n, self term included; x'_i = Σ_j A_ij y_j + α x_i.
Metrics: the angle ratio λ (mean over pairs of (1 − ⟨y'_i, y'_j⟩)/(1 − ⟨y_i, y_j⟩)), the mean self-weight A_ii,
the mean output cosine, the mean row entropy of A, and η = ‖∂X'/∂X‖_F² / (n d) by a Hutchinson estimate with an
analytic Jacobian-vector product. Everything but η is float64 (1 − cos can be tiny); grids run in chunks so that
at most ``CHUNK_ELEMENTS`` attention weights exist at once.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

__all__ = ["CHUNK_ELEMENTS", "eta", "eta_exact", "jvp", "layer", "metrics"]

CHUNK_ELEMENTS = 2**24


def _betas(gammas: Sequence[float] | torch.Tensor, n: int, dtype) -> torch.Tensor:
    return torch.as_tensor(gammas, dtype=dtype).reshape(-1) * math.log(n)


def layer(x: torch.Tensor, gamma: float, alpha: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(X', A) for one γ: the layer's output [n, d] and attention weights [n, n]."""
    y = x / x.norm(dim=-1, keepdim=True)
    a = torch.softmax(gamma * math.log(x.shape[0]) * (y @ y.T), dim=-1)  # softmax subtracts the row max
    return a @ y + alpha * x, a


def metrics(x: torch.Tensor, gammas: Sequence[float], alpha: float = 0.0) -> dict[str, torch.Tensor]:
    """λ, self-weight, output cosine and entropy for each γ (tensors of len(gammas)), float64."""
    x = x.double()
    n = x.shape[0]
    y = x / x.norm(dim=-1, keepdim=True)
    g = y @ y.T
    gap = 1 - g
    # pair weights for λ: i < j and not already the same direction (1 − cos > 1e-12), divided by 1 − cos
    pairs = torch.triu(torch.ones(n, n, dtype=torch.bool), 1) & (gap > 1e-12)
    weight = torch.where(pairs, 1 / gap.where(pairs, 1.0), 0.0)
    count = int(pairs.sum())
    betas = _betas(gammas, n, torch.float64)
    out: dict[str, list[torch.Tensor]] = {k: [] for k in ("lambda", "self_weight", "output_cosine", "entropy")}
    step = max(1, CHUNK_ELEMENTS // (n * n))
    for s in range(0, len(betas), step):
        b = betas[s : s + step, None, None]
        logits = b * g
        logp = torch.log_softmax(logits, dim=-1)
        a = logp.exp()
        xo = a @ y + alpha * x
        yo = xo / xo.norm(dim=-1, keepdim=True)
        go = yo @ yo.transpose(-1, -2)
        out["lambda"].append(((1 - go) * weight).sum((-1, -2)) / count)
        out["self_weight"].append(a.diagonal(dim1=-2, dim2=-1).mean(-1))
        off = go.sum((-1, -2)) - go.diagonal(dim1=-2, dim2=-1).sum(-1)
        out["output_cosine"].append(off / (n * (n - 1)))
        out["entropy"].append(-(a * logp).sum(-1).mean(-1))
    return {k: torch.cat(v) for k, v in out.items()}


def jvp(x: torch.Tensor, v: torch.Tensor, beta: torch.Tensor, alpha: float = 0.0) -> torch.Tensor:
    """J v for X ↦ X' at X = x, for each β in ``beta`` [G] and each probe in ``v`` [P, n, d]: returns [G, P, n, d].

    dY = (dX − Y⟨Y, dX⟩)/|x|;  dS = β(dY Yᵀ + Y dYᵀ);  dA = A ⊙ (dS − rowsum(A ⊙ dS));  dX' = dA Y + A dY + α dX.
    """
    r = x.norm(dim=-1, keepdim=True)
    y = x / r
    dy = (v - y * (y * v).sum(-1, keepdim=True)) / r  # [P, n, d]
    m = dy @ y.T + y @ dy.transpose(-1, -2)  # [P, n, n]: dS / β
    a = torch.softmax(beta[:, None, None] * (y @ y.T), dim=-1)[:, None]  # [G, 1, n, n]
    ds = beta[:, None, None, None] * m  # [G, P, n, n]
    da = a * (ds - (a * ds).sum(-1, keepdim=True))
    return da @ y + a @ dy + alpha * v


def eta(
    x: torch.Tensor,
    gammas: Sequence[float],
    alpha: float = 0.0,
    probes: int = 2,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Hutchinson estimate of η = ‖∂X'/∂X‖_F² / (n d) for each γ: the mean of ‖J v‖² / (n d) over Gaussian probes
    v ~ N(0, I) (the same probes for every γ). float32 by default: η is not a small difference."""
    n, d = x.shape
    x = x.to(dtype)
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(probes, n, d, generator=g, dtype=torch.float64).to(dtype)
    betas = _betas(gammas, n, dtype)
    step = max(1, CHUNK_ELEMENTS // (n * n * max(1, probes)))
    out = [
        jvp(x, v, betas[s : s + step], alpha).pow(2).sum((-1, -2)).mean(-1) / (n * d)
        for s in range(0, len(betas), step)
    ]
    return torch.cat(out).double()


def eta_exact(x: torch.Tensor, gamma: float, alpha: float = 0.0) -> float:
    """η from the full Jacobian (torch.func), for small n·d: the reference for ``eta``."""
    from torch.func import jacfwd

    jac = jacfwd(lambda z: layer(z, gamma, alpha)[0])(x.double())
    n, d = x.shape
    return float(jac.pow(2).sum() / (n * d))
