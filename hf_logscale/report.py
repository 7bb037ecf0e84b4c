"""The comparison report: ``report.md`` with settings, environment, tables, the figures, and a short reading of
the results written from the numbers (nothing in it is typed by hand)."""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .results import write_atomic

__all__ = ["mean_by", "passkey_context", "reading", "write_report"]

PASSKEY_THRESHOLD = 0.8  # YaRN's "passkey context": the largest length with accuracy ≥ 80 %


def mean_by(records, task: str, metric: str) -> dict[tuple[str, int], float | None]:
    """(variant, length) → mean over depths (None if any cell ran out of memory)."""
    acc: dict[tuple[str, int], list] = {}
    for r in records:
        if r["task"] == task and r["metric"] == metric:
            acc.setdefault((r["variant"], r["length"]), []).append(r["value"])
    return {k: (None if any(x is None for x in v) else sum(v) / len(v)) for k, v in acc.items()}


def passkey_context(acc: dict[tuple[str, int], float | None], variant: str, lengths: Sequence[int]) -> int | None:
    """The largest length up to which every length has mean accuracy ≥ ``PASSKEY_THRESHOLD``."""
    best = None
    for n in lengths:
        a = acc.get((variant, n))
        if a is None or a < PASSKEY_THRESHOLD:
            break
        best = n
    return best


def _table(variants, lengths, values, fmt, train_len) -> str:
    head = "| variant | " + " | ".join(f"{n}" + (f" ({n / train_len:g}×)" if train_len else "") for n in lengths)
    lines = [head + " |", "|---" * (len(lengths) + 1) + "|"]
    for v in variants:
        cells = []
        for n in lengths:
            x = values.get((v, n), "missing")
            cells.append("—" if x == "missing" else "OOM" if x is None else fmt(x))
        lines.append(f"| `{v}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def reading(records, variants: Sequence[str], train_len: int | None) -> list[str]:
    """Plain sentences derived from the numbers."""
    out = []
    ppl = mean_by(records, "ppl", "perplexity")
    lengths = sorted({n for _, n in ppl})
    if ppl and "none" in variants:
        first, last = lengths[0], lengths[-1]
        base0, base1 = ppl.get(("none", first)), ppl.get(("none", last))
        if base0 and base1:
            out.append(
                f"Without scaling the model's perplexity goes from {base0:.2f} at n = {first} to {base1:.2f} at "
                f"n = {last} (×{base1 / base0:.2f})."
            )
        at_last = {v: ppl.get((v, last)) for v in variants if ppl.get((v, last)) is not None}
        if at_last:
            best = min(at_last, key=at_last.get)
            out.append(f"At n = {last} the lowest perplexity is `{best}` ({at_last[best]:.2f}).")
        if base0:
            drift = {v: ppl[(v, first)] / base0 - 1 for v in variants if ppl.get((v, first)) is not None}
            worst = max(drift, key=lambda v: abs(drift[v]))
            out.append(
                f"At n = {first} the variants stay within {abs(drift[worst]) * 100:.1f} % of the unscaled perplexity "
                f"(largest change: `{worst}`, {drift[worst] * 100:+.1f} %)."
            )
        longer = [n for n in lengths if train_len and n > train_len]
        if longer and "none" in variants:
            better = [v for v in variants if v != "none" and all(
                ppl.get((v, n)) is not None and ppl.get(("none", n)) is not None and ppl[(v, n)] < ppl[("none", n)]
                for n in longer)]  # fmt: skip
            out.append(
                "Lower perplexity than no scaling at every length beyond L: "
                + (", ".join(f"`{v}`" for v in better) if better else "no variant")
                + "."
            )
    for task, name in (("passkey", "Passkey"), ("needle", "Needle")):
        acc = mean_by(records, task, "accuracy")
        if not acc:
            continue
        lens = sorted({n for _, n in acc})
        ctx = {v: passkey_context(acc, v, lens) for v in variants}
        parts = [f"`{v}` {ctx[v] if ctx[v] else '< ' + str(lens[0])}" for v in variants]
        out.append(
            f"{name} context (largest length up to which mean accuracy stays ≥ {PASSKEY_THRESHOLD:.0%}): "
            + ", ".join(parts)
            + "."
        )
        last = lens[-1]
        at_last = {v: acc.get((v, last)) for v in variants if acc.get((v, last)) is not None}
        if at_last:
            top = max(at_last.values())
            best = [f"`{v}`" for v, a in at_last.items() if a == top]
            out.append(f"{name} accuracy at n = {last}: best {', '.join(best)} ({top:.2f}).")
    return out


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
        *[f"- {s}" for s in reading(records, variants, train_len)],
        "",
    ]
    ppl = mean_by(records, "ppl", "perplexity")
    if ppl:
        lengths = sorted({n for _, n in ppl})
        lines += ["## Perplexity", "", _table(variants, lengths, ppl, lambda x: f"{x:.2f}", train_len), ""]
    for task, name in (("passkey", "Passkey"), ("needle", "Needle")):
        acc = mean_by(records, task, "accuracy")
        if acc:
            lengths = sorted({n for _, n in acc})
            tok = mean_by(records, task, "tf_token_accuracy")
            lines += [
                f"## {name} retrieval",
                "",
                "Generation accuracy (first integer of the greedy answer equals the key), mean over depths:",
                "",
                _table(variants, lengths, acc, lambda x: f"{x:.2f}", train_len),
                "",
                "Teacher-forced: fraction of the key's tokens predicted top-1 (graded), mean over depths:",
                "",
                _table(variants, lengths, tok, lambda x: f"{x:.2f}", train_len),
                "",
            ]
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
