"""Closed forms for simplex tokens (paper.md §2–§3): the exact finite-n layer and the n → ∞ limits of
Theorems 2.1 (forward, with residual α) and 2.4 (gradients, α = 0)."""

from __future__ import annotations

import math

__all__ = ["gamma_c", "limits", "regime", "simplex_exact"]


def gamma_c(rho: float) -> float:
    """The critical γ_c = 1/(1 − ρ): β_n = γ_c ln n balances the self term n^γ against the bulk n^{1+γρ}."""
    return 1.0 / (1.0 - rho)


def regime(gamma: float, rho: float, tol: float = 1e-9) -> str:
    g = gamma / gamma_c(rho)
    return "critical" if abs(g - 1) <= tol else "subcritical" if g < 1 else "supercritical"


def simplex_exact(n: int, rho: float, gamma: float, alpha: float = 0.0, q: float = 1.0) -> dict[str, float]:
    """Exact values at finite n for simplex tokens (|x_i|² = q, ⟨y_i, y_j⟩ = ρ).

    With p = A_ii = 1/(1 + (n−1) n^{−γ(1−ρ)}), o = (1 − p)/(n − 1), x'_i = a y_i + b Σ_j y_j where a = p − o + α√q
    and b = o; with c = 1 + (n − 1)ρ: |x'_i|² = a² + 2abc + b²nc, λ = a²/|x'_i|², output cosine 1 − (1 − ρ)λ.
    """
    p = 1.0 / (1.0 + (n - 1) * math.exp(-gamma * (1 - rho) * math.log(n)))
    o = (1 - p) / (n - 1)
    a, b, c = p - o + alpha * math.sqrt(q), o, 1 + (n - 1) * rho
    norm2 = a * a + 2 * a * b * c + b * b * n * c
    lam = a * a / norm2
    entropy = -(p * math.log(p) + (1 - p) * math.log(o)) if 0 < p < 1 else 0.0
    return {"self_weight": p, "lambda": lam, "output_cosine": 1 - (1 - rho) * lam, "entropy": entropy}


def limits(gamma: float, rho: float, alpha: float = 0.0, q: float = 1.0, d: int | None = None) -> dict[str, float]:
    """n → ∞ limits for simplex tokens: self-weight, λ and output cosine (Theorem 2.1, any α ≥ 0) and, for α = 0,
    η (Theorem 2.4; needs d)."""
    r = regime(gamma, rho)
    s = alpha * math.sqrt(q)
    if r == "subcritical":
        p, lam = 0.0, s * s / (s * s + 2 * s * rho + rho)
    elif r == "critical":
        c = 0.5 + s
        p, lam = 0.5, c * c / (c * c + c * rho + rho / 4)
    else:
        p, lam = 1.0, 1.0
    out = {"regime": r, "self_weight": p, "lambda": lam, "output_cosine": 1 - (1 - rho) * lam}
    if alpha == 0 and d is not None:
        out["eta"] = {"subcritical": 0.0, "critical": 0.25, "supercritical": 1.0}[r] * (1 - 1 / d) / q
    return out
