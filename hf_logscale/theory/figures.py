"""Figures of the theory: phase-diagram heatmaps (one panel per d) with the dashed critical curve γ_c = 1/(1 − ρ),
and n-sweeps across γ/γ_c."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from .closed_form import gamma_c, limits
from .phase import Grid

__all__ = ["LABELS", "plot_phase", "plot_sweep"]

LABELS = {
    "lambda": "λ, angle ratio (0: collapse, 1: identity)",
    "eta": "η = ‖∂X'/∂X‖²_F / (n d)",
    "self_weight": "mean self-weight A_ii",
    "output_cosine": "mean output cosine ⟨y'_i, y'_j⟩",
    "entropy": "mean attention entropy (nats)",
}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_phase(grids: Sequence[Grid], path: Path, title: str | None = None) -> Path:
    plt = _plt()
    fig, axes = plt.subplots(
        1, len(grids), figsize=(4.3 * len(grids) + 1.2, 4.0), dpi=130, squeeze=False, layout="constrained"
    )
    # λ, A_ii and cosines live in [0, 1]; η's large-d plateau is (1 − 1/d)/q ≤ 1/q, and at small d a token of tiny norm
    # (1/|x| in the pre-norm Jacobian) can push single points far above it: clip those instead of rescaling the map
    bounded = grids[0].metric != "entropy"
    vmax = 1.0 if bounded else max(float(g.values.max()) for g in grids)
    mesh = None
    for ax, g in zip(axes[0], grids, strict=True):
        rhos = torch.tensor(g.rhos)
        ys = g.gammas[0] / gamma_c(g.rhos[0]) if g.relative else g.gammas[0]
        mesh = ax.pcolormesh(rhos, ys, g.values.T, vmin=0, vmax=vmax, cmap="viridis", shading="nearest")
        fine = torch.linspace(float(rhos.min()), float(rhos.max()), 200)
        crit = torch.ones_like(fine) if g.relative else 1 / (1 - fine)
        inside = crit <= float(ys.max())
        ax.plot(fine[inside], crit[inside], "w--", lw=1.5, label="γ = γ_c = 1/(1−ρ)")
        ax.set(
            xlabel="ρ (token cosine)",
            ylabel="γ / γ_c" if g.relative else "γ  (β_n = γ ln n)",
            title=f"d = {g.d}, n = {g.n}" + (f", α = {g.alpha:g}" if g.alpha else ""),
        )
        ax.set_ylim(float(ys.min()), float(ys.max()))
        ax.legend(loc="upper left", fontsize=7, framealpha=0.6)
    over = bounded and any(float(g.values.max()) > vmax for g in grids)
    fig.colorbar(mesh, ax=axes, shrink=0.9, label=LABELS[grids[0].metric], extend="max" if over else "neither")
    fig.suptitle(title or f"Phase diagram of one attention layer: {LABELS[grids[0].metric]}", fontsize=10)
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_sweep(
    values: dict[int, torch.Tensor],
    ratios: Sequence[float],
    rho: float,
    metric: str,
    path: Path,
    alpha: float = 0.0,
    d: int | None = None,
) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 4.2), dpi=130)
    for i, (n, v) in enumerate(sorted(values.items())):
        ax.plot(ratios, v, color=f"C{i}", lw=1.5, label=f"n = {n}")
    ax.axvline(1.0, color="0.3", ls="--", lw=1, label="γ = γ_c")
    at_c = limits(gamma_c(rho), rho, alpha, d=d).get(metric)
    if at_c is not None:
        ax.axhline(at_c, color="0.5", ls=":", lw=1, label=f"n → ∞ value at γ_c ({at_c:.3f})")
    ax.set(xlabel="γ / γ_c", ylabel=LABELS[metric], title=f"Sharpening with n (ρ = {rho:g}, α = {alpha:g})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
