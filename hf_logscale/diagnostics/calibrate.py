"""Calibration: the τ of the ``critical`` scheme that keeps attention entropy at longer lengths at the model's own
level at its training length L.

Target: the mean entropy of attention rows that see n ∈ (L/2, L] keys, without scaling. For each longer length N,
H_N(τ) is the mean entropy of rows with n ∈ (N/2, N] under ``critical:tau=τ``. τ minimises Σ_N (H_N(τ) − target)²
(golden-section search; entropy falls as τ grows). Globally (all layers and heads) or for one layer at a time (only
that layer scaled, its own entropies).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..config import LogScaleConfig
from ..patching.families import attention_layers
from ..tables import Table
from ..variants import Variant
from .entropy import attention_entropy

__all__ = ["Calibration", "band_entropy", "calibrate", "calibrate_layers", "layers_table"]


@dataclass(frozen=True)
class Calibration:
    tau: float
    target: float  # entropy at L without scaling
    lengths: list[int]
    fitted: dict[int, float]  # H_N at the fitted τ
    unscaled: dict[int, float]  # H_N without scaling
    rms: float  # root-mean-square of H_N(τ) − target
    layer: int | None = None

    def table(self, train_len: int) -> Table:
        title = (
            f"critical τ = {self.tau:.4f}; target entropy at L = {train_len}: {self.target:.4f} nats; "
            f"RMS misfit {self.rms:.4f}"
        )
        table = Table(title, ["N", "entropy unscaled", f"entropy at τ = {self.tau:.3f}", "target"], text_columns=0)
        table.rows = [
            [str(n), f"{self.unscaled[n]:.4f}", f"{self.fitted[n]:.4f}", f"{self.target:.4f}"] for n in self.lengths
        ]
        return table

    def recipe(self, train_len: int, description: str) -> str:
        """A recipe file (TOML) with this τ; the description is written as a JSON string, which TOML reads."""
        return (
            f'description = {json.dumps(description)}\n\n[scale]\nscheme = "critical"\ntrain_len = {train_len}\n'
            f"tau = {self.tau:.4f}\n"
        )


def band_entropy(entropy: torch.Tensor, length: int, layer: int | None = None) -> float:
    """Mean entropy of rows that see n ∈ (length/2, length] keys; ``entropy`` is [layers, heads, T]."""
    e = entropy if layer is None else entropy[layer : layer + 1]
    lo, hi = length // 2, min(length, e.shape[-1])  # row index i sees i + 1 keys
    return float(e[..., lo:hi].mean())


def _profile(model, windows, tau: float, train_len: int, layer: int | None) -> torch.Tensor:
    scale = LogScaleConfig(
        "critical", train_len=train_len, params={"tau": tau}, layers=(layer,) if layer is not None else None
    )
    return torch.stack([attention_entropy(model, w, Variant(scale=scale)) for w in windows]).mean(0)


def calibrate(
    model: Any,
    windows: Sequence[torch.Tensor],
    lengths: Sequence[int],
    train_len: int,
    *,
    layer: int | None = None,
    target: float | None = None,
    tau_max: float = 8.0,
    iterations: int = 18,
    log: Any = None,
) -> Calibration:
    """Fit τ on token ``windows`` ([1, T] each, T ≥ max(lengths)). ``target`` overrides the entropy at L."""
    longer = sorted(n for n in lengths if n > train_len)
    if not longer:
        raise ValueError(f"calibration needs lengths beyond the training length {train_len}")
    if any(w.shape[-1] < longer[-1] for w in windows):
        raise ValueError(f"every window needs {longer[-1]} tokens")
    base = _profile(model, windows, 0.0, train_len, layer)
    if target is None:
        target = band_entropy(base, train_len, layer)
    cache: dict[float, dict[int, float]] = {}

    def entropies(tau: float) -> dict[int, float]:
        if tau not in cache:
            prof = _profile(model, windows, tau, train_len, layer)
            cache[tau] = {n: band_entropy(prof, n, layer) for n in longer}
            if log:
                shown = ", ".join(f"{h:.3f}" for h in cache[tau].values())
                log(f"τ = {tau:.4f}: entropy {shown} (target {target:.3f}) [{len(cache)}/{iterations + 3}]")
        return cache[tau]

    def loss(tau: float) -> float:
        return sum((h - target) ** 2 for h in entropies(tau).values())

    a, b = 0.0, tau_max
    ratio = (math.sqrt(5) - 1) / 2
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    for _ in range(iterations):
        if loss(c) <= loss(d):
            b, d = d, c
            c = b - ratio * (b - a)
        else:
            a, c = c, d
            d = a + ratio * (b - a)
    tau = (a + b) / 2
    fitted = entropies(tau)
    return Calibration(
        tau=tau,
        target=target,
        lengths=longer,
        fitted=fitted,
        unscaled={n: band_entropy(base, n, layer) for n in longer},
        rms=math.sqrt(loss(tau) / len(longer)),
        layer=layer,
    )


def layers_table(fits: Sequence[Calibration]) -> Table:
    table = Table("τ fitted per layer (only that layer scaled)", ["layer", "τ", "RMS misfit"], text_columns=0)
    table.rows = [[str(c.layer), f"{c.tau:.4f}", f"{c.rms:.4f}"] for c in fits]
    return table


def calibrate_layers(
    model: Any, windows: Sequence[torch.Tensor], lengths: Sequence[int], train_len: int, *, log: Any = None
) -> list[Calibration]:
    """τ fitted for each attention layer alone (only that layer scaled, matched on its own entropies)."""
    out = []
    for i, _ in attention_layers(model):
        if log:
            log(f"layer {i}:")
        out.append(calibrate(model, windows, lengths, train_len, layer=i, log=log))
    return out
