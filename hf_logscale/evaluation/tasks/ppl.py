"""The perplexity task: NLL, perplexity and bits per byte at each length over the documents of a corpus
(``truncate`` or ``sliding``; see ``hf_logscale.evaluation.perplexity``), with a per-position loss curve."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ... import checks
from ...data.sources import load_documents
from ...errors import UserError
from ...tables import Table, mean_by
from ..perplexity import MODES, perplexity, perplexity_windows, tokenize_documents
from ..task import CORPUS, CellResult, Figure, Metric, Setting, Task, register_task

__all__ = ["Perplexity"]


@dataclass(frozen=True)
class _Documents:
    tokens: list[list[int]]  # token ids of each document, without special tokens
    bos: int | None


def _mode(name: str, value: Any) -> str:
    if value not in MODES:
        raise UserError(f"`{name}` must be one of {', '.join(MODES)}, got {value!r}")
    return value


@register_task
class Perplexity(Task):
    name = "ppl"
    title = "Perplexity"
    description = "perplexity across context lengths on long documents"
    metrics = (
        Metric("perplexity", "perplexity", False),
        Metric("nll", "NLL", False, "{:.4f}"),
        Metric("bits_per_byte", "bits/byte", False, "{:.4f}"),
    )
    headline = "perplexity"
    settings = (
        *CORPUS,
        Setting("mode", "truncate", _mode),
        Setting("stride", None, lambda name, v: checks.integer(name, v, minimum=1)),
        Setting("max_documents", None, lambda name, v: checks.integer(name, v, minimum=1)),
    )
    figures = (
        Figure("lines", "perplexity", "Perplexity vs context length", "ppl_vs_length.png", log_scale=True),
        Figure("positions", "nll", "Per-position loss", "position_loss.png"),
    )
    report_tables = (("perplexity", ""),)

    def check(self, settings: dict[str, Any]) -> None:
        if settings["stride"] is not None and settings["mode"] != "sliding":
            raise UserError("`stride` goes with mode sliding (--mode sliding)")

    def prepare(self, tokenizer: Any, spec, lengths: Sequence[int]) -> _Documents:
        docs = load_documents(spec.dataset, field=spec.field, split=spec.split)
        data = _Documents(tokenize_documents(tokenizer, [d.text for d in docs]), tokenizer.bos_token_id)
        tokens = data.tokens
        too_long = [n for n in lengths if not self.items(data, spec, n)]
        if too_long:
            longest = max((len(t) for t in tokens), default=0)
            raise UserError(
                f"no document of {spec.dataset!r} is long enough for length {too_long[0]} ({len(tokens)} documents, "
                f"longest {longest} tokens); drop lengths ≥ {too_long[0]} or use longer documents"
            )
        return data

    def items(self, data: _Documents, spec, length: int) -> int:
        windows, _, _ = perplexity_windows(data.tokens, length, spec.mode, spec.stride, data.bos, spec.max_documents)
        return len(windows)

    def run(self, model, tokenizer, spec, data, length, depth, batch_size, advance) -> CellResult:
        r = perplexity(
            model,
            tokenizer,
            data.tokens,
            length,
            mode=spec.mode,
            stride=spec.stride,
            batch_size=batch_size,
            max_documents=spec.max_documents,
            advance=advance,
        )
        return CellResult(
            {"perplexity": r.perplexity, "nll": r.nll, "bits_per_byte": r.bits_per_byte},
            {
                "tokens": r.tokens,
                "bytes": r.bytes,
                "documents": r.documents,
                "skipped": r.skipped,
                "windows": r.windows,
            },
            {"nll": {"curve": r.curve, "windows": [list(w) for w in r.per_window]}},
        )

    def table(self, records: Sequence[dict[str, Any]], train_len: int | None) -> Table:
        cells: dict[int, dict[str, dict]] = {}
        for r in records:
            cells.setdefault(r["length"], {})[r["metric"]] = r
        title = f"ppl: {records[0]['model']} · {records[0]['variant']}" if records else "ppl"
        table = Table(
            title, ["n", "n / L", "perplexity", "NLL", "bits/byte", "tokens", "docs (skipped)"], text_columns=0
        )
        for n in sorted(cells):
            m = cells[n]
            ratio = f"{n / train_len:g}" if train_len else "—"
            if m["nll"]["status"] != "ok":
                table.rows.append([str(n), ratio, "out of memory", "", "", "", ""])
                continue
            c = m["nll"]["counts"]
            table.rows.append(
                [
                    str(n),
                    ratio,
                    f"{m['perplexity']['value']:.3f}",
                    f"{m['nll']['value']:.4f}",
                    f"{m['bits_per_byte']['value']:.4f}",
                    f"{c['tokens']:,}",
                    f"{c['documents']} ({c['skipped']})",
                ]
            )
        return table

    def findings(self, records, variants, train_len) -> list[str]:
        ppl = mean_by(records, self.name, "perplexity")
        if not ppl or "none" not in variants:
            return []
        out = []
        lengths = sorted({n for _, n in ppl})
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
        if longer:
            better = [
                v
                for v in variants
                if v != "none"
                and all(
                    ppl.get((v, n)) is not None and ppl.get(("none", n)) is not None and ppl[(v, n)] < ppl[("none", n)]
                    for n in longer
                )
            ]
            out.append(
                "Lower perplexity than no scaling at every length beyond L: "
                + (", ".join(f"`{v}`" for v in better) if better else "no variant")
                + "."
            )
        return out
