"""Figures of ``diagnose``: entropy vs n per layer (variants overlaid, L and ln n marked), and collapse and gradient
curves vs length."""

from __future__ import annotations

import math
from pathlib import Path

import torch

__all__ = ["plot_collapse", "plot_entropy"]


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _buckets(t: int) -> list[tuple[int, int]]:
    edges = [1]
    while edges[-1] * 2 < t:
        edges.append(edges[-1] * 2)
    edges.append(t + 1)
    return list(zip(edges[:-1], edges[1:], strict=True))


def plot_entropy(diag: dict, train_len: int | None, path: Path, title: str) -> Path:
    plt = _plt()
    variants = list(diag["entropy"])
    first = torch.tensor(diag["entropy"][variants[0]])
    layers, _, t = first.shape
    cols = min(4, layers)
    rows = math.ceil(layers / cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(3.6 * cols + 1.6, 3.0 * rows + 0.6), dpi=130, squeeze=False, layout="constrained"
    )
    buckets = _buckets(t)
    xs = [math.sqrt(lo * (hi - 1)) for lo, hi in buckets]  # geometric middle of the n range
    for layer in range(layers):
        ax = axes.flat[layer]
        for i, v in enumerate(variants):
            e = torch.tensor(diag["entropy"][v])[layer].mean(0)  # mean over heads, by row (n = row + 1)
            ys = [float(e[lo - 1 : hi - 1].mean()) for lo, hi in buckets]
            style = dict(color="black", lw=2.0) if v == "none" else dict(color=f"C{i % 10}", lw=1.3)
            ax.plot(xs, ys, marker=".", label=v, **style)
        ax.plot(xs, [math.log(x) for x in xs], color="0.6", ls=":", lw=1, label="ln n (uniform)")
        if train_len:
            ax.axvline(train_len, color="0.4", ls="--", lw=1)
        ax.set_xscale("log", base=2)
        ax.set(title=f"layer {layer}", xlabel="keys seen n", ylabel="entropy (nats)")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[layers:]:
        ax.axis("off")
    axes.flat[min(layers, len(axes.flat)) - 1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.suptitle(title, fontsize=10)
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_collapse(diag: dict, train_len: int | None, path: Path, title: str) -> Path:
    """Mean pairwise cosine and effective rank at the deepest layer's input, and the gradient norm at the first
    layer's input, against the window length."""
    plt = _plt()
    variants = list(diag["collapse"])
    panels = [("cosine", "mean pairwise cosine (last layer input)"), ("effective_rank", "effective rank / n")]
    if any(diag["gradients"].get(v) for v in variants):
        panels.append(("gradient", "‖∂loss/∂h‖ at layer 0 input"))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.3 * len(panels) + 1.5, 3.6), dpi=130, layout="constrained")
    for ax, (key, label) in zip(axes, panels, strict=True):
        for i, v in enumerate(variants):
            ns = sorted(int(n) for n in diag["collapse"][v])
            if key == "gradient":
                ys = [diag["gradients"][v][str(n)][0] for n in ns]
            elif key == "effective_rank":
                ys = [diag["collapse"][v][str(n)][key][-1] / (n - 1) for n in ns]
            else:
                ys = [diag["collapse"][v][str(n)][key][-1] for n in ns]
            style = dict(color="black", lw=2.0) if v == "none" else dict(color=f"C{i % 10}", lw=1.3)
            ax.plot(ns, ys, marker="o", ms=3, label=v, **style)
        if train_len:
            ax.axvline(train_len, color="0.4", ls="--", lw=1)
        ax.set_xscale("log", base=2)
        ax.set(xlabel="window length", ylabel=label)
        ax.grid(alpha=0.3)
    axes[-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.suptitle(title, fontsize=10)
    fig.savefig(path)
    plt.close(fig)
    return path
