"""``hf-logscale theory phase-diagram|sweep-n|point``: the paper's model of one attention layer."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from ..errors import UserError
from .options import SeedOpt
from .render import Progress, out, print_table

app = typer.Typer(
    help="The paper's model of one attention layer: phase diagrams, n-sweeps, single points vs closed forms.",
    no_args_is_help=True,
)


class Metric(str, Enum):
    lambda_ = "lambda"
    eta = "eta"
    self_weight = "self-weight"
    output_cosine = "output-cosine"
    entropy = "entropy"


class TokenKind(str, Enum):
    gaussian = "gaussian"
    simplex = "simplex"


MAX_GRID = 10_000  # points per axis: a mistyped count must not exhaust memory
AlphaOpt = Annotated[float, typer.Option(min=0.0, help="Residual weight α.")]
TheoryOut = Annotated[Path, typer.Option("--out", help="Folder for the figure and the CSV.")]


def grid_values(text: str, name: str) -> list[float]:
    """``start:stop:count`` (inclusive, evenly spaced) or a comma-separated list."""
    try:
        if ":" in text:
            start, stop, count = text.split(":")
            k = int(count)
            if not 2 <= k <= MAX_GRID:
                raise ValueError
            return [float(start) + (float(stop) - float(start)) * i / (k - 1) for i in range(k)]
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UserError(
            f"{name} must be start:stop:count (2 ≤ count ≤ {MAX_GRID}) or a comma list, got {text!r}"
        ) from None


def int_values(text: str, name: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 2:
        raise UserError(f"{name} must be comma-separated integers ≥ 2, got {text!r}")
    return values


@app.command("phase-diagram")
def theory_phase(
    d: Annotated[str, typer.Option("--d", help="Token dimensions, one panel each.")] = "512,32,2",
    n: Annotated[int, typer.Option("--n", min=2, help="Number of tokens.")] = 1024,
    rho_grid: Annotated[str, typer.Option(help="ρ values: start:stop:count or a list, in (0, 1).")] = "0.02:0.9:40",
    gamma_grid: Annotated[str, typer.Option(help="γ values (β_n = γ ln n): start:stop:count or a list.")] = "0:12:40",
    relative: Annotated[bool, typer.Option(help="Read --gamma-grid as γ/γ_c (the critical curve is then 1).")] = False,
    alpha: AlphaOpt = 0.0,
    metric: Annotated[Metric, typer.Option(help="What to map.")] = Metric.lambda_,
    tokens: Annotated[TokenKind, typer.Option(help="Almost-simplex Gaussian tokens or exact simplex (d ≥ n).")] = (
        TokenKind.gaussian
    ),
    seed: SeedOpt = 0,
    probes: Annotated[int, typer.Option(min=1, help="Hutchinson probes per point (η).")] = 2,
    out_dir: TheoryOut = Path("theory"),
) -> None:
    """Heatmaps of a metric over (ρ, γ), one panel per d, with the dashed critical curve γ_c = 1/(1 − ρ).

    Example: hf-logscale theory phase-diagram --metric eta
    """
    from ..theory import phase_diagram, write_csv
    from ..theory.figures import plot_phase

    dims, rhos, gammas = (
        int_values(d, "--d"),
        grid_values(rho_grid, "--rho-grid"),
        grid_values(gamma_grid, "--gamma-grid"),
    )
    name = metric.value.replace("-", "_")
    grids = []
    with Progress() as bar:
        for dim in dims:
            grids.append(
                phase_diagram(
                    dim,
                    n,
                    rhos,
                    gammas,
                    relative=relative,
                    metric=name,
                    alpha=alpha,
                    tokens=tokens.value,
                    seed=seed,
                    probes=probes,
                    advance=bar(f"{metric.value} d={dim}", len(rhos)),
                )
            )
    out_dir.mkdir(parents=True, exist_ok=True)
    fig, csv = plot_phase(grids, out_dir / f"phase_{name}.png"), write_csv(grids, out_dir / f"phase_{name}.csv")
    for g in grids:
        out.print(f"d = {g.d}: {len(rhos)} × {len(gammas)} grid in {g.seconds:.1f} s")
    out.print(f"Figure: {fig}; every grid point: {csv}")


@app.command("sweep-n")
def theory_sweep(
    n: Annotated[str, typer.Option("--n", help="Numbers of tokens.")] = "64,256,1024",
    d: Annotated[int | None, typer.Option("--d", help="Dimension (default: n, exact simplex tokens).")] = None,
    rho: Annotated[float, typer.Option(help="Token cosine ρ in (0, 1).")] = 0.5,
    ratio_grid: Annotated[str, typer.Option(help="γ/γ_c values: start:stop:count or a list.")] = "0.25:2:43",
    alpha: AlphaOpt = 0.0,
    metric: Annotated[Metric, typer.Option(help="What to plot.")] = Metric.lambda_,
    tokens: Annotated[TokenKind, typer.Option(help="Token configuration.")] = TokenKind.simplex,
    seed: SeedOpt = 0,
    out_dir: TheoryOut = Path("theory"),
) -> None:
    """The metric against γ/γ_c for several n: the transition sharpens (logarithmically) as n grows.

    Example: hf-logscale theory sweep-n --rho 0.5 --n 64,256,1024
    """
    from ..theory import sweep_n, write_sweep_csv
    from ..theory.figures import plot_sweep

    ns, ratios = int_values(n, "--n"), grid_values(ratio_grid, "--ratio-grid")
    name = metric.value.replace("-", "_")
    values = sweep_n(ns, d, rho, ratios, metric=name, alpha=alpha, tokens=tokens.value, seed=seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    fig = plot_sweep(values, ratios, rho, name, out_dir / f"sweep_{name}.png", alpha=alpha, d=d)
    path = write_sweep_csv(
        values, ratios, out_dir / f"sweep_{name}.csv", metric=name, rho=rho, alpha=alpha, d=d, tokens=tokens.value
    )
    out.print(f"Figure: {fig}; values: {path}")


@app.command("point")
def theory_point(
    rho: Annotated[float, typer.Option(help="Token cosine ρ in (0, 1).")],
    gamma: Annotated[float, typer.Option(help="γ ≥ 0 (β_n = γ ln n).")],
    n: Annotated[int, typer.Option("--n", min=2, help="Number of tokens.")] = 1024,
    d: Annotated[int | None, typer.Option("--d", help="Dimension (default n).")] = None,
    alpha: AlphaOpt = 0.0,
    tokens: Annotated[TokenKind, typer.Option(help="Token configuration.")] = TokenKind.simplex,
    seed: SeedOpt = 0,
    probes: Annotated[int, typer.Option(min=1, help="Hutchinson probes (η).")] = 8,
) -> None:
    """Every metric at one point, next to the exact finite-n closed form (simplex tokens) and the n → ∞ limit.

    Example: hf-logscale theory point --rho 0.5 --gamma 2 --n 1024
    """
    from ..tables import Table
    from ..theory import point

    p = point(rho, gamma, n, d, alpha=alpha, tokens=tokens.value, seed=seed, probes=probes)
    title = (
        f"ρ = {rho:g} (realised {p['mean_cosine']:.4f}), γ = {gamma:g} = {p['gamma_over_gamma_c']:.3f} γ_c, "
        f"n = {n}, d = {p['d']}, α = {alpha:g}: {p['regime']}"
    )
    table = Table(title, ["metric", "simulated", "exact (finite n)", "limit n → ∞"])

    def fmt(x: float | None) -> str:
        return "—" if x is None else f"{x:.6f}"

    for k in ("self_weight", "lambda", "output_cosine", "entropy", "eta"):
        table.rows.append([k, fmt(p["simulated"][k]), fmt(p["exact"].get(k)), fmt(p["limit"].get(k))])
    print_table(table)
