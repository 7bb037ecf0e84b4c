"""Result tables as data: a title, a header and rows of strings, rendered as rich tables by the CLI and as markdown
by the report. The variant × length grid of one metric is built here once for both."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Table", "grid", "mean_by"]


@dataclass
class Table:
    title: str
    header: list[str]
    rows: list[list[str]] = field(default_factory=list)
    # columns holding names (left-aligned, wrapped rather than cut when the terminal is narrow); the rest are numbers
    text_columns: int = 1

    def markdown(self) -> str:
        header = [h.replace("\n", " ") for h in self.header]  # a header may break its line in a terminal
        lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in self.rows]
        return "\n".join(lines)


def mean_by(records: Sequence[dict[str, Any]], task: str, metric: str) -> dict[tuple[str, int], float | None]:
    """(variant, length) → the metric's mean over the cells of that length (depths); None if any cell ran out
    of memory."""
    acc: dict[tuple[str, int], list] = {}
    for r in records:
        if r["task"] == task and r["metric"] == metric:
            acc.setdefault((r["variant"], r["length"]), []).append(r["value"])
    return {k: (None if any(x is None for x in v) else sum(v) / len(v)) for k, v in acc.items()}


def grid(
    records: Sequence[dict[str, Any]],
    variants: Sequence[str],
    task: str,
    metric: str,
    title: str,
    fmt: Callable[[float], str] = "{:.2f}".format,
    train_len: int | None = None,
    code: bool = False,
) -> Table | None:
    """One row per variant, one column per length (with n / L when L is known): the metric's mean over depths.
    Missing cells show "—", out-of-memory cells "OOM". None when the records hold no such metric. ``code`` wraps
    variant names in backticks (markdown)."""
    values = mean_by(records, task, metric)
    if not values:
        return None
    lengths = sorted({n for _, n in values})
    header = ["variant"] + [f"{n}" + (f"\n({n / train_len:g}×L)" if train_len else "") for n in lengths]
    table = Table(title, header)
    for v in variants:
        cells = []
        for n in lengths:
            x = values.get((v, n), "missing")
            cells.append("—" if x == "missing" else "OOM" if x is None else fmt(x))
        table.rows.append([f"`{v}`" if code else v, *cells])
    return table
