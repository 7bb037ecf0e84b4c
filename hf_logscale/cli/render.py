"""Everything the commands print: results on stdout, progress and diagnostics on stderr, tables from the library's
``Table`` data, the patch summary, and a warning display."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table as RichTable

from ..grammar import format_params

__all__ = ["err", "out", "Progress", "print_grids", "print_table", "print_patch_report", "ranges", "show_warning"]

out = Console()  # results
err = Console(stderr=True)  # progress and diagnostics


def print_table(table, console: Console = out) -> None:
    """A ``hf_logscale.tables.Table``: name columns wrap (never cut into look-alikes), number columns align right."""
    rich = RichTable(title=table.title or None)
    for i, head in enumerate(table.header):
        if i < table.text_columns:
            rich.add_column(head, overflow="fold")
        else:
            rich.add_column(head, justify="right", no_wrap=True)
    narrow = console.width < 100  # a log file or a narrow terminal: long names go on several lines
    for row in table.rows:
        cells = [_breakable(c) if narrow and i < table.text_columns else c for i, c in enumerate(row)]
        rich.add_row(*(escape(c) for c in cells))
    console.print(rich)


def _breakable(name: str, width: int = 24) -> str:
    """A variant name on lines of at most ``width`` characters, broken after a comma or before a ``+`` only, so a
    number is never cut in two (``factor=16.0`` must not read as ``factor=1`` / ``6.0``)."""
    import re

    pieces = [p for p in re.split(r"(?<=,)|(?=\+)", name) if p]
    lines = [""]
    for piece in pieces:
        if lines[-1] and len(lines[-1]) + len(piece) > width:
            lines.append("")
        lines[-1] += piece
    return "\n".join(lines)


def print_grids(result, tasks, train_len: int | None) -> None:
    """compare's summary: for each task, its headline metric per variant and length (mean over depths)."""
    from ..tables import grid

    for t in tasks:
        title = f"{t.title}: {t.headline}" + (" (mean over depths)" if t.uses_depths else "")
        table = grid(result.records, result.variants, t.name, t.headline, title, train_len=train_len)
        if table is not None:
            print_table(table)


class Progress:
    """A rich progress bar on stderr; calling it starts a unit of work (a cell) and returns its advance function.
    The finished unit is removed, so one numbered line stays on screen."""

    def __enter__(self):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn, TimeRemainingColumn

        columns = ("{task.description}", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
        self.bar = Progress(*columns, console=err, transient=False)
        self.bar.__enter__()
        self.task, self.count = None, 0
        return self

    def __exit__(self, *exc):
        return self.bar.__exit__(*exc)

    def __call__(self, description: str, total: int):
        if self.task is not None:
            self.bar.remove_task(self.task)
        self.count += 1
        self.task = task = self.bar.add_task(f"[{self.count}] {description}", total=total)
        return lambda k: self.bar.advance(task, k)


def ranges(ids: list[int]) -> str:
    """``[0, 1, 2, 5]`` → ``0–2, 5``."""
    ids = sorted(ids)
    if not ids:
        return "none"
    parts, start, prev = [], ids[0], ids[0]
    for i in ids[1:] + [None]:
        if i is not None and i == prev + 1:
            prev = i
            continue
        parts.append(str(start) if start == prev else f"{start}–{prev}")
        if i is not None:
            start = prev = i
    return ", ".join(parts)


def column_name(key: str) -> str:
    """A describe row key as a column title: ``s@window4096:max`` → ``s(min(n, W=4096)) max``."""
    key, _, stat = key.partition(":")
    names = {"s": "s(n)", "native": "native", "effective": "× RoPE factor² = effective (max s)"}
    name = names.get(key) or key.replace("s@window", "s(min(n, W=") + "))"
    return f"{name} {stat}" if stat else name


def print_patch_report(r) -> None:
    """``describe``'s report: what is patched, L and its source, RoPE, native scales, the effective multipliers."""
    info = RichTable(show_header=False, box=None)
    info.add_column(style="bold")
    info.add_column()
    windows = sorted({w for w in r.windows.values() if w is not None})
    sliding = [i for i, w in r.windows.items() if w is not None]
    window_text = f"W = {', '.join(map(str, windows))} on layers {ranges(sliding)}: n = min(pos + 1, W)"
    compounding = f" → logits × {r.rope_attention_factor**2:.4f} compound with s(n)" if r.compounding else ""
    rows = [
        ("architecture", f"{r.architecture} ({r.model_type}, {r.num_layers} attention layers)"),
        ("attention", r.attn_implementation),
        ("variant", r.variant),
        ("patched layers", ranges(r.patched_layers) + (" (all)" if len(r.patched_layers) == r.num_layers else "")),
        ("sliding windows", window_text if sliding else "none"),
        ("train length L", f"{r.train_len} ({r.train_len_source})"),
        ("RoPE", f"{r.rope}, attention factor {r.rope_attention_factor:.4f}{compounding}"),
    ]
    if r.layer_params:
        own = "; ".join(f"{i}: " + format_params(p) for i, p in r.layer_params.items())
        rows.append(("own parameters", f"layers {own}"))
    rows += [("own logits", note) for note in r.logit_notes]
    if r.native_scale:
        state = "replaced by s(n) while patched (restored by unpatch)" if r.native_replaced else "on, × s(n)"
        rows.append(("native length scale", f"{r.native_scale}: {state}"))
    for k, v in rows:
        info.add_row(k, escape(v))
    out.print(info)
    table = RichTable(title="Effective logit multiplier")
    keys = [k for k in r.rows[0] if k != "n"]
    table.add_column("n", justify="right")
    table.add_column("n / L", justify="right")
    for k in keys:
        table.add_column(column_name(k), justify="right")
    for row in r.rows:
        table.add_row(str(row["n"]), f"{row['n'] / r.train_len:g}", *(f"{row[k]:.4f}" for k in keys))
    out.print(table)


def show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    err.print(f"[yellow]Warning:[/yellow] {escape(str(message))}", highlight=False, soft_wrap=True)
