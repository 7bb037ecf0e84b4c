"""Phase diagrams over (ρ, γ) and sweeps in n, computed with the simulator (``layer``) on almost-simplex Gaussian
tokens (or exact simplex tokens where d ≥ n is affordable)."""

from __future__ import annotations

import csv
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .. import checks
from ..errors import UserError
from .closed_form import gamma_c, limits, simplex_exact
from .layer import eta, metrics
from .tokens import gaussian_tokens, simplex_tokens

__all__ = ["METRICS", "Grid", "phase_diagram", "point", "sweep_dimension", "sweep_n", "write_csv", "write_sweep_csv"]

METRICS = ("lambda", "eta", "self_weight", "output_cosine", "entropy")


@dataclass
class Grid:
    """Values of one metric on a (ρ, γ) grid for one (n, d): ``values[i, j]`` at ``rhos[i]`` and ``gammas[i, j]``
    (γ rows differ per ρ when the grid is given in units of γ_c)."""

    metric: str
    n: int
    d: int
    alpha: float
    rhos: list[float]
    gammas: torch.Tensor  # [R, G]
    values: torch.Tensor  # [R, G]
    mean_cosines: list[float]  # realised ⟨y_i, y_j⟩ per ρ
    relative: bool  # the γ grid was given as γ/γ_c
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)


MAX_TOKENS = 8192  # n and d: the simulator holds n × n scores and n × d tokens in float64
MAX_GAMMA = 1000.0  # γ (and α): β = γ ln n beyond this only saturates; the closed forms overflow near 1e308


def sweep_dimension(kind: str, n: int, d: int | None) -> int:
    """The dimension n tokens of ``kind`` live in: d = n when not given; simplex tokens need d ≥ n."""
    return n if d is None else d


def _check(
    *,
    n: int | None = None,
    d: int | None = None,
    rho: float | None = None,
    gammas: Sequence[float] | None = None,
    alpha: float = 0.0,
    tokens: str = "gaussian",
    metric: str = "lambda",
    probes: int = 1,
    seed: int = 0,
) -> None:
    """Every input of the simulator, up front: names, ranges, finiteness, and sizes it can hold (it keeps n × n
    scores and n × d tokens in float64: n, d ≤ 8192 is 512 MiB each)."""
    if n is not None:
        checks.integer("n", n, minimum=2, maximum=MAX_TOKENS)
    if d is not None:
        checks.integer("d", d, minimum=1, maximum=MAX_TOKENS)
        if tokens == "simplex" and n is not None and d < n:
            raise UserError(f"`d` must be ≥ n = {n} for simplex tokens (n unit vectors in general position), got {d}")
    if rho is not None:
        checks.number("rho", rho, minimum=0, maximum=1, low_open=True, high_open=True)
    if gammas is not None:
        checks.sequence("gamma", gammas, lambda name, g: checks.number(name, g, minimum=0, maximum=MAX_GAMMA))
    checks.number("alpha", alpha, minimum=0, maximum=MAX_GAMMA)
    checks.integer("probes", probes, minimum=1)
    checks.integer("seed", seed)
    if tokens not in ("gaussian", "simplex"):
        raise UserError(f"`tokens` must be gaussian or simplex, got {tokens!r}")
    if metric not in METRICS:
        raise UserError(f"`metric` must be one of {', '.join(METRICS)}, got {metric!r}")


def _tokens(kind: str, n: int, d: int, rho: float, seed: int):
    if kind == "simplex":
        return simplex_tokens(n, rho, d=sweep_dimension(kind, n, d))
    if kind == "gaussian":
        return gaussian_tokens(n, d, rho, seed)
    raise UserError(f"`tokens` must be gaussian or simplex, got {kind!r}")


def _values(metric: str, x: torch.Tensor, gammas: Sequence[float], alpha: float, probes: int, seed: int):
    if metric == "eta":
        return eta(x, gammas, alpha, probes=probes, seed=seed)
    if metric not in METRICS:
        raise UserError(f"`metric` must be one of {', '.join(METRICS)}, got {metric!r}")
    return metrics(x, gammas, alpha)[metric]


def phase_diagram(
    d: int,
    n: int,
    rhos: Sequence[float],
    gammas: Sequence[float],
    *,
    relative: bool = False,
    metric: str = "lambda",
    alpha: float = 0.0,
    tokens: str = "gaussian",
    seed: int = 0,
    probes: int = 2,
    advance: Callable[[int], None] | None = None,
) -> Grid:
    """``metric`` over ρ × γ (or ρ × γ/γ_c with ``relative``) for n tokens in d dimensions."""
    _check(n=n, d=d, gammas=gammas, alpha=alpha, tokens=tokens, metric=metric, probes=probes, seed=seed)
    for rho in checks.sequence("rho", rhos, checks.number):
        _check(rho=rho)
    t0 = time.perf_counter()
    rows, cos, grid = [], [], []
    for rho in rhos:
        tok = _tokens(tokens, n, d, rho, seed)
        gs = [g * gamma_c(rho) for g in gammas] if relative else list(gammas)
        rows.append(_values(metric, tok.x, gs, alpha, probes, seed))
        grid.append(gs)
        cos.append(tok.mean_cosine)
        if advance:
            advance(1)
    return Grid(
        metric,
        n,
        d,
        alpha,
        list(rhos),
        torch.tensor(grid, dtype=torch.float64),
        torch.stack(rows),
        cos,
        relative,
        time.perf_counter() - t0,
    )


def sweep_n(
    ns: Sequence[int],
    d: int | None,
    rho: float,
    ratios: Sequence[float],
    *,
    metric: str = "lambda",
    alpha: float = 0.0,
    tokens: str = "simplex",
    seed: int = 0,
    probes: int = 2,
) -> dict[int, torch.Tensor]:
    """``metric`` against γ/γ_c for each n at fixed ρ (d = n for simplex tokens when ``d`` is None): the transition
    sharpens as n grows."""
    checks.sequence("n", ns, lambda name, v: checks.integer(name, v, minimum=2, maximum=MAX_TOKENS))
    for n in ns:
        dim = sweep_dimension(tokens, n, d)
        _check(n=n, d=dim, rho=rho, gammas=ratios, alpha=alpha, tokens=tokens, metric=metric, probes=probes, seed=seed)
    out = {}
    for n in ns:
        tok = _tokens(tokens, n, sweep_dimension(tokens, n, d), rho, seed)
        out[n] = _values(metric, tok.x, [r * gamma_c(rho) for r in ratios], alpha, probes, seed)
    return out


def write_csv(grids: Sequence[Grid], path: Path) -> Path:
    """One row per grid point: metric, n, d, α, ρ, realised mean cosine, γ, γ/γ_c, value."""
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["metric", "n", "d", "alpha", "rho", "mean_cosine", "gamma", "gamma_over_gamma_c", "value"])
        for g in grids:
            for i, rho in enumerate(g.rhos):
                for j in range(g.gammas.shape[1]):
                    gamma = float(g.gammas[i, j])
                    w.writerow(
                        [
                            g.metric,
                            g.n,
                            g.d,
                            g.alpha,
                            rho,
                            f"{g.mean_cosines[i]:.6f}",
                            f"{gamma:.6g}",
                            f"{gamma / gamma_c(rho):.6g}",
                            f"{float(g.values[i, j]):.10g}",
                        ]
                    )
    tmp.replace(path)
    return path


def write_sweep_csv(
    values: dict[int, torch.Tensor],
    ratios: Sequence[float],
    path: Path,
    *,
    metric: str,
    rho: float,
    alpha: float,
    d: int | None,
    tokens: str,
) -> Path:
    """One row per (n, γ/γ_c) of a ``sweep_n`` result: metric, n, the dimension used, ρ, α, γ/γ_c, value."""
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["metric", "n", "d", "rho", "alpha", "gamma_over_gamma_c", "value"])
        for n, v in values.items():
            dim = sweep_dimension(tokens, n, d)
            w.writerows([metric, n, dim, rho, alpha, r, f"{float(x):.10g}"] for r, x in zip(ratios, v, strict=True))
    tmp.replace(path)
    return path


def point(
    rho: float,
    gamma: float,
    n: int,
    d: int | None = None,
    *,
    alpha: float = 0.0,
    tokens: str = "simplex",
    seed: int = 0,
    probes: int = 8,
) -> dict[str, Any]:
    """Every metric at one (ρ, γ) next to the exact finite-n closed form (simplex tokens) and the n → ∞ limit:
    ``{"simulated": {...}, "exact": {...}, "limit": {...}, "regime", "d", "mean_cosine", "gamma_over_gamma_c"}``."""
    dim = n if d is None else d
    _check(n=n, d=dim, rho=rho, gammas=[gamma], alpha=alpha, tokens=tokens, probes=probes, seed=seed)
    tok = simplex_tokens(n, rho, d=dim) if tokens == "simplex" else gaussian_tokens(n, dim, rho, seed)
    sim = {k: float(v[0]) for k, v in metrics(tok.x, [gamma], alpha).items()}
    sim["eta"] = float(eta(tok.x, [gamma], alpha, probes=probes, seed=seed)[0])
    lim = limits(gamma, rho, alpha, d=dim)
    return {
        "simulated": sim,
        "exact": simplex_exact(n, rho, gamma, alpha) if tokens == "simplex" else {},
        "limit": lim,
        "regime": lim["regime"],
        "d": dim,
        "mean_cosine": tok.mean_cosine,
        "gamma_over_gamma_c": gamma / gamma_c(rho),
    }
