"""The comparison report: ``report.md`` with settings, environment, each task's tables and figures, and a short
reading of the results written from the numbers by the tasks themselves (nothing in it is typed by hand)."""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..evaluation.task import TASKS
from ..results import write_atomic
from ..tables import grid

__all__ = ["write_report"]


def write_report(
    out_dir: Path,
    records: list[dict[str, Any]],
    variants: Sequence[str],
    *,
    model_name: str,
    train_len: int | None,
    settings: dict[str, Any],
    figures: dict[str, Path],
    command: str,
) -> Path:
    """``out_dir/report.md`` (written atomically)."""
    env = records[0]["versions"] if records else {}
    device = records[0].get("device") if records else "?"
    dtype = records[0].get("dtype") if records else "?"
    source = records[0].get("train_len_source") if records else None
    tasks = [TASKS[n] for n in dict.fromkeys(r["task"] for r in records) if n in TASKS]  # in the order run
    lines = [
        f"# hf-logscale comparison: {model_name}",
        "",
        f"Generated {datetime.datetime.now().isoformat(timespec='seconds')} by `{command}`.",
        "",
        "## Settings",
        "",
        f"- model: `{model_name}`, training length L = {train_len}" + (f" ({source})" if source else ""),
        f"- variants: {', '.join(f'`{v}`' for v in variants)}",
        *[f"- {k}: {_fmt(v)}" for k, v in settings.items() if v is not None],
        f"- environment: device {device}, dtype {dtype}, " + ", ".join(f"{k} {v}" for k, v in env.items()),
        "",
        "## Reading",
        "",
        *[f"- {s}" for task in tasks for s in task.findings(records, variants, train_len)],
        "",
    ]
    for task in tasks:
        sections = []
        for metric, sentence in task.report_tables:
            fmt = task.metric(metric).fmt.format
            table = grid(records, variants, task.name, metric, "", fmt, train_len, code=True)
            if table is not None:
                sections += ([sentence, ""] if sentence else []) + [table.markdown(), ""]
        if sections:
            lines += [f"## {task.title}", "", *sections]
    if figures:
        lines += ["## Figures", ""]
        for caption, path in figures.items():
            lines += [f"**{caption}**", "", f"![{caption}]({Path(path).name})", ""]
    lines += [
        "## Files",
        "",
        "`results.jsonl` (one record per cell and metric, with counts, timings, versions and per-trial answers), "
        "`summary.csv`, the figures above.",
        "",
    ]
    path = Path(out_dir) / "report.md"
    write_atomic(path, "\n".join(lines))
    return path


def _fmt(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        return ", ".join(f"{x:g}" if isinstance(x, float) else str(x) for x in value)
    return str(value)
