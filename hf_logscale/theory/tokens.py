"""Token configurations of the paper's model (paper.md §1): exact simplex tokens (Assumption 1) and almost-simplex
Gaussian tokens (Assumption 2)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..errors import UserError

__all__ = ["Tokens", "gaussian_tokens", "simplex_tokens"]


@dataclass(frozen=True)
class Tokens:
    x: torch.Tensor  # [n, d], float64
    rho: float  # nominal pairwise cosine
    q: float  # nominal squared norm

    @property
    def n(self) -> int:
        return self.x.shape[0]

    @property
    def d(self) -> int:
        return self.x.shape[1]

    @property
    def mean_cosine(self) -> float:
        """The realised mean pairwise cosine ⟨y_i, y_j⟩ over i ≠ j."""
        y = self.x / self.x.norm(dim=-1, keepdim=True)
        g = y @ y.T
        n = self.n
        return float((g.sum() - g.diagonal().sum()) / (n * (n - 1)))


def _check(n: int, rho: float, q: float) -> None:
    if n < 2:
        raise UserError(f"`n` must be ≥ 2, got {n}")
    if not 0.0 < rho < 1.0:
        raise UserError(f"`rho` must be in (0, 1), got {rho}")
    if q <= 0:
        raise UserError(f"`q` must be > 0, got {q}")


def simplex_tokens(n: int, rho: float, q: float = 1.0, d: int | None = None) -> Tokens:
    """n tokens with |x_i|² = q and ⟨y_i, y_j⟩ = ρ exactly (i ≠ j), in d ≥ n dimensions (default d = n): the rows of
    the Cholesky factor of the Gram matrix (1 − ρ)I + ρ11ᵀ, padded with zeros."""
    _check(n, rho, q)
    d = n if d is None else d
    if d < n:
        raise UserError(f"exact simplex tokens need d ≥ n; got d={d}, n={n}")
    gram = torch.full((n, n), rho, dtype=torch.float64)
    gram.diagonal().fill_(1.0)
    y = torch.linalg.cholesky(gram)
    x = torch.zeros(n, d, dtype=torch.float64)
    x[:, :n] = math.sqrt(q) * y
    return Tokens(x, rho, q)


def gaussian_tokens(n: int, d: int, rho: float, seed: int = 0, q: float = 1.0) -> Tokens:
    """Almost-simplex tokens x_i = √q (√ρ z_0 + √(1−ρ) z_i) with z_0, z_i i.i.d. N(0, I_d / d): E|x_i|² = q and
    E⟨x_i, x_j⟩ = qρ; the realised cosines scatter around ρ, the more so the smaller d (``Tokens.mean_cosine``)."""
    _check(n, rho, q)
    if d < 1:
        raise UserError(f"`d` must be ≥ 1, got {d}")
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n + 1, d, generator=g, dtype=torch.float64) / math.sqrt(d)
    x = math.sqrt(q) * (math.sqrt(rho) * z[:1] + math.sqrt(1 - rho) * z[1:])
    return Tokens(x, rho, q)
