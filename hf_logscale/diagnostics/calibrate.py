"""Calibration: the τ of the ``critical`` scheme, fitted on held-out windows, by one of two objectives.

- ``entropy``: keep attention entropy at longer lengths at the model's own level at its training length L. Target:
  the mean entropy of rows that see n ∈ (L/2, L] keys, without scaling; for each longer length N, H_N(τ) is the mean
  entropy of rows with n ∈ (N/2, N] under ``critical:tau=τ``; the objective is Σ_N (H_N(τ) − target)².
- ``nll``: what users care about — the mean next-token NLL (nats) at the target lengths, each window cut to its first
  N tokens, averaged over lengths.

Both scan a grid of τ (the reported curve of the objective), then refine the best bracket by golden-section search.
Globally (all layers scaled alike) or for one layer at a time (only that layer scaled; for ``entropy`` matched on its
own entropies); ``recipe`` writes the result, with per-layer τ when given the per-layer fits.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ..config import LogScaleConfig
from ..errors import UserError
from ..evaluation.logprobs import decoder_hidden, next_token_nll
from ..patching import patched
from ..patching.families import attention_layers
from ..tables import Table
from ..variants import Variant, recipe_text
from .entropy import attention_entropy

__all__ = ["OBJECTIVES", "Calibration", "band_entropy", "calibrate", "calibrate_layers", "layers_table"]

OBJECTIVES = ("entropy", "nll")
GRID = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0)


@dataclass(frozen=True)
class Calibration:
    tau: float
    objective: str  # "entropy" or "nll"
    value: float  # the objective at τ (entropy: RMS misfit in nats; nll: mean NLL in nats)
    lengths: list[int]
    curve: list[tuple[float, float]]  # (τ, objective) at every τ evaluated, sorted by τ
    fitted: dict[int, float]  # per length at τ: entropy H_N, or NLL
    unscaled: dict[int, float]  # per length at τ = 0
    target: float | None = None  # entropy at L without scaling (entropy objective)
    layer: int | None = None
    per_length: dict[float, dict[int, float]] = field(default_factory=dict, repr=False)

    @property
    def rms(self) -> float:  # the entropy objective's misfit, kept under its earlier name
        return self.value

    def table(self, train_len: int) -> Table:
        if self.objective == "entropy":
            title = (
                f"critical τ = {self.tau:.4f}; target entropy at L = {train_len}: {self.target:.4f} nats; "
                f"RMS misfit {self.value:.4f}"
            )
            head = ["N", "entropy unscaled", f"entropy at τ = {self.tau:.3f}", "target"]
            rows = [
                [str(n), f"{self.unscaled[n]:.4f}", f"{self.fitted[n]:.4f}", f"{self.target:.4f}"] for n in self.lengths
            ]
        else:
            title = (
                f"critical τ = {self.tau:.4f}: mean held-out NLL {self.value:.4f} nats (τ = 0: {self.curve[0][1]:.4f})"
            )
            head = ["N", "NLL unscaled", f"NLL at τ = {self.tau:.3f}", "perplexity change"]
            rows = [
                [
                    str(n),
                    f"{self.unscaled[n]:.4f}",
                    f"{self.fitted[n]:.4f}",
                    f"{math.exp(self.fitted[n] - self.unscaled[n]) - 1:+.1%}",
                ]
                for n in self.lengths
            ]
        return Table(title, head, rows, text_columns=0)

    def curve_table(self) -> Table:
        label = "RMS entropy misfit (nats)" if self.objective == "entropy" else "mean NLL (nats)"
        rows = [[f"{t:.4g}", f"{v:.4f}" + ("  ← fitted" if t == self.tau else "")] for t, v in self.curve]
        return Table(f"the objective over τ ({self.objective})", ["τ", label], rows, text_columns=0)

    def recipe(self, train_len: int, description: str, per_layer: Sequence[Calibration] = ()) -> str:
        """A recipe file (TOML) with this τ, and each layer's own τ when given per-layer fits."""
        scale = {"scheme": "critical", "train_len": train_len, "tau": float(self.tau)}
        return recipe_text(description, scale, {c.layer: {"tau": float(c.tau)} for c in per_layer})


def band_entropy(entropy: torch.Tensor, length: int, layer: int | None = None) -> float:
    """Mean entropy of rows that see n ∈ (length/2, length] keys; ``entropy`` is [layers, heads, T]."""
    e = entropy if layer is None else entropy[layer : layer + 1]
    lo, hi = length // 2, min(length, e.shape[-1])  # row index i sees i + 1 keys
    return float(e[..., lo:hi].mean())


def _variant(tau: float, train_len: int, layer: int | None) -> Variant:
    layers = (layer,) if layer is not None else None
    return Variant(scale=LogScaleConfig("critical", train_len=train_len, tau=tau, layers=layers))


@torch.no_grad()
def _nll(model: Any, windows: Sequence[torch.Tensor], lengths: Sequence[int], variant: Variant) -> dict[int, float]:
    """Mean next-token NLL of each window's first N tokens, per N, under ``variant``."""
    device = model.get_input_embeddings().weight.device
    out = {}
    with patched(model, variant):
        for n in lengths:
            total, count = 0.0, 0
            for w in windows:
                x = w[:, :n].to(device)
                nll = next_token_nll(model, decoder_hidden(model, x)[:, :-1], x[:, 1:])
                total, count = total + float(nll.double().sum()), count + nll.numel()
            out[n] = total / count
    return out


def calibrate(
    model: Any,
    windows: Sequence[torch.Tensor],
    lengths: Sequence[int],
    train_len: int,
    *,
    objective: str = "entropy",
    layer: int | None = None,
    target: float | None = None,
    tau_max: float = 8.0,
    iterations: int = 12,
    log: Any = None,
) -> Calibration:
    """Fit τ on token ``windows`` ([1, T] each, T ≥ max(lengths)). ``target`` overrides the entropy at L."""
    if objective not in OBJECTIVES:
        raise UserError(f"`objective` must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
    longer = sorted(n for n in lengths if n > train_len)
    if not longer:
        raise UserError(f"calibration needs lengths beyond the training length {train_len}")
    if any(w.shape[-1] < longer[-1] for w in windows):
        raise UserError(f"every window needs {longer[-1]} tokens")
    per_length: dict[float, dict[int, float]] = {}
    if objective == "entropy" and target is None:
        base = torch.stack([attention_entropy(model, w, _variant(0.0, train_len, layer)) for w in windows]).mean(0)
        target = band_entropy(base, train_len, layer)
    grid = [t for t in GRID if t <= tau_max]

    def evaluate(tau: float) -> float:
        if tau not in per_length:
            v = _variant(tau, train_len, layer)
            if objective == "entropy":
                prof = torch.stack([attention_entropy(model, w, v) for w in windows]).mean(0)
                per_length[tau] = {n: band_entropy(prof, n, layer) for n in longer}
            else:
                per_length[tau] = _nll(model, windows, longer, v)
            if log:
                shown = ", ".join(f"{h:.3f}" for h in per_length[tau].values())
                log(f"τ = {tau:.4f}: {objective} at {longer}: {shown} [{len(per_length)}/{len(grid) + iterations}]")
        values = per_length[tau]
        if objective == "entropy":
            return math.sqrt(sum((h - target) ** 2 for h in values.values()) / len(values))
        return sum(values.values()) / len(values)

    scores = [evaluate(t) for t in grid]
    best = min(range(len(grid)), key=scores.__getitem__)
    a, b = grid[max(best - 1, 0)], grid[min(best + 1, len(grid) - 1)]
    ratio = (math.sqrt(5) - 1) / 2
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    for _ in range(iterations):  # golden-section search inside the best bracket of the grid
        if evaluate(c) <= evaluate(d):
            b, d = d, c
            c = b - ratio * (b - a)
        else:
            a, c = c, d
            d = a + ratio * (b - a)
    tau = min(per_length, key=evaluate)
    return Calibration(
        tau=tau,
        objective=objective,
        value=evaluate(tau),
        lengths=longer,
        curve=sorted((t, evaluate(t)) for t in per_length),
        fitted=per_length[tau],
        unscaled=per_length[0.0],
        target=target,
        layer=layer,
        per_length=per_length,
    )


def layers_table(fits: Sequence[Calibration]) -> Table:
    label = "RMS misfit" if fits and fits[0].objective == "entropy" else "mean NLL"
    table = Table("τ fitted per layer (only that layer scaled)", ["layer", "τ", label], text_columns=0)
    table.rows = [[str(c.layer), f"{c.tau:.4f}", f"{c.value:.4f}"] for c in fits]
    return table


def calibrate_layers(
    model: Any,
    windows: Sequence[torch.Tensor],
    lengths: Sequence[int],
    train_len: int,
    *,
    objective: str = "entropy",
    log: Any = None,
) -> list[Calibration]:
    """τ fitted for each attention layer alone (only that layer scaled; entropy: matched on its own entropies)."""
    out = []
    for i, _ in attention_layers(model):
        if log:
            log(f"layer {i}:")
        out.append(calibrate(model, windows, lengths, train_len, objective=objective, layer=i, log=log))
    return out
