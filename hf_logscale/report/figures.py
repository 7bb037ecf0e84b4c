"""Figures from result records (matplotlib, Agg), of the kinds tasks declare: a metric vs length per variant
(``lines``), accuracy heatmaps length × depth per variant (``heatmap``), per-position loss curves
(``positions``). Titled, labelled, log-2 length axes, the training length marked."""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..evaluation.task import TASKS, Figure, Task
from ..tables import mean_by

__all__ = ["make_figures", "plot_heatmaps", "plot_lines", "plot_position_curves"]


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _values(records, task: str, metric: str) -> dict[tuple[str, int, Any], float]:
    return {
        (r["variant"], r["length"], r["depth"]): r["value"]
        for r in records
        if r["task"] == task and r["metric"] == metric and r["value"] is not None
    }


def _length_axis(ax, lengths: Sequence[int], train_len: int | None) -> None:
    ax.set_xscale("log", base=2)
    ax.set_xticks(list(lengths))
    ratio = (lambda n: f"\n{n / train_len:g}×L") if train_len else (lambda n: "")
    ax.set_xticklabels([f"{n}{ratio(n)}" for n in lengths], fontsize=8)
    ax.minorticks_off()
    if train_len:
        ax.axvline(train_len, color="0.4", ls="--", lw=1)
        ax.text(
            train_len, 1.0, " training length L", transform=ax.get_xaxis_transform(), va="top", fontsize=8, color="0.3"
        )


def make_figures(records, variants: Sequence[str], train_len: int | None, out: Path, name: str) -> dict[str, Path]:
    """Every figure the tasks in ``records`` declare, written into ``out``: caption → path."""
    figures: dict[str, Path] = {}
    for task in [TASKS[n] for n in dict.fromkeys(r["task"] for r in records) if n in TASKS]:  # in the order run
        for fig in task.figures:
            draw = {"lines": plot_lines, "heatmap": plot_heatmaps, "positions": plot_position_curves}[fig.kind]
            title = f"{name}: {fig.caption[0].lower()}{fig.caption[1:]}"
            figures[fig.caption] = draw(records, variants, train_len, task, fig, out / fig.filename, title)
    return figures


def plot_lines(records, variants, train_len, task: Task, fig_spec: Figure, path: Path, title: str) -> Path:
    """The metric against context length, one line per variant (mean over depths), ``none`` in black."""
    plt = _plt()
    means = mean_by(records, task.name, fig_spec.metric)
    vals = {(v, n, None): x for (v, n), x in means.items() if x is not None}
    lengths = sorted({n for _, n, _ in vals})
    fig, ax = plt.subplots(figsize=(8, 4.8), dpi=130)
    for i, v in enumerate(variants):
        pts = [(n, vals[(v, n, None)]) for n in lengths if (v, n, None) in vals]
        if pts:
            style = dict(color="black", lw=2.2) if v == "none" else dict(color=f"C{i % 10}", lw=1.4)
            ax.plot(*zip(*pts, strict=True), marker="o", ms=3.5, label=v, **style)
    _length_axis(ax, lengths, train_len)
    label = task.metric(fig_spec.metric).label
    if fig_spec.log_scale:
        from matplotlib.ticker import FuncFormatter

        ax.set_yscale("log")
        plain = FuncFormatter(lambda y, _: f"{y:g}")
        ax.yaxis.set_major_formatter(plain)
        ax.yaxis.set_minor_formatter(plain)
        ax.tick_params(axis="y", which="minor", labelsize=7)
        label += " (log scale)"
    ax.set(xlabel="context length n (tokens)", ylabel=label, title=title)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), title="variant", title_fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_heatmaps(records, variants, train_len, task: Task, fig_spec: Figure, path: Path, title: str) -> Path:
    """The metric (in [0, 1]) over length × depth, one panel per variant."""
    plt = _plt()
    vals = _values(records, task.name, fig_spec.metric)
    lengths = sorted({n for _, n, _ in vals})
    depths = sorted({d for _, _, d in vals})
    shown = [v for v in variants if any(k[0] == v for k in vals)]
    cols = min(4, len(shown))
    rows = math.ceil(len(shown) / cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(3.1 * cols + 0.8, 2.9 * rows + 0.6), dpi=130, squeeze=False, layout="constrained"
    )
    image = None
    for ax, v in zip(axes.flat, shown, strict=False):
        grid = [[vals.get((v, n, d), math.nan) for n in lengths] for d in depths]
        image = ax.imshow(grid, vmin=0, vmax=1, cmap="RdYlGn", aspect="auto", origin="upper")
        for i, row in enumerate(grid):
            for j, a in enumerate(row):
                text = "OOM" if math.isnan(a) else f"{a:.1f}"
                ax.text(j, i, text, ha="center", va="center", fontsize=7, color="black")
        ax.set_xticks(range(len(lengths)), [str(n) for n in lengths], fontsize=7, rotation=45)
        ax.set_yticks(range(len(depths)), [f"{d:g}" for d in depths], fontsize=7)
        ax.set_title("\n".join(textwrap.wrap(v.replace(",", ", "), 30)), fontsize=8)
        ax.set_xlabel("length n", fontsize=7)
        ax.set_ylabel("depth", fontsize=7)
    for ax in list(axes.flat)[len(shown) :]:
        ax.axis("off")
    if image is not None:
        fig.colorbar(image, ax=axes, shrink=0.8, label=task.metric(fig_spec.metric).label)
    fig.suptitle(title, fontsize=10)
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_position_curves(records, variants, train_len, task: Task, fig_spec: Figure, path: Path, title: str) -> Path:
    """The per-position curve stored with a metric (bucketed at powers of two) for the three longest lengths, one
    line per variant."""
    plt = _plt()
    curves = {
        (r["variant"], r["length"]): r["curve"]
        for r in records
        if r["task"] == task.name and r["metric"] == fig_spec.metric and r.get("curve")
    }
    lengths = sorted({n for _, n in curves})[-3:]
    fig, axes = plt.subplots(1, len(lengths), figsize=(4.2 * len(lengths) + 1.5, 3.8), dpi=130, squeeze=False)
    for ax, n in zip(axes[0], lengths, strict=True):
        for i, v in enumerate(variants):
            c = curves.get((v, n))
            if not c:
                continue
            pts = [(hi, x) for hi, x in zip(c["edges"][1:], c["nll"], strict=True) if x is not None]
            style = dict(color="black", lw=2.2) if v == "none" else dict(color=f"C{i % 10}", lw=1.3)
            ax.plot(*zip(*pts, strict=True), marker=".", label=v, **style)
        ax.set_xscale("log", base=2)
        if train_len:
            ax.axvline(train_len, color="0.4", ls="--", lw=1)
        ax.set(
            xlabel="position in the window (tokens, bucket end)",
            ylabel=f"mean {task.metric(fig_spec.metric).label}",
            title=f"n = {n}",
        )
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), title="variant", title_fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
