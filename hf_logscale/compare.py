"""Patch-then-evaluate matrices: variants × tasks × lengths on one loaded model (DESIGN §5–§7).

Each variant is applied to the same model object and removed after (``patched``: RoPE changes rebuild only the
rotary modules; removal restores the model bit-identically); ``none`` runs the model unpatched. Every cell goes
through ``eval.evaluate`` into one result store, so an interrupted matrix resumes where it stopped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .distributed import current
from .eval.run import EvalSpec, Progress, evaluate
from .patching import patched
from .report import write_report
from .results import ResultStore
from .variants import Variant, parse_variant

__all__ = [
    "DEFAULT_SCALES",
    "CompareResult",
    "compare",
    "default_variants",
    "make_figures",
    "run_compare",
    "yarn_factor",
]

DEFAULT_SCALES = ("none", "logn", "critical:tau=0.5", "critical:tau=2", "ssmax")


def yarn_factor(max_length: int, train_len: int) -> int:
    """The smallest whole factor F with F·L ≥ the largest length (at least 2)."""
    return max(2, math.ceil(max_length / train_len))


def default_variants(max_length: int, train_len: int) -> list[str]:
    """The default matrix: β_n schemes alone, transformers' YaRN as is, YaRN frequencies only, and YaRN
    frequencies with logn in place of YaRN's temperature; F covers the largest length."""
    f = yarn_factor(max_length, train_len)
    return [*DEFAULT_SCALES, f"yarn:factor={f}", f"yarn:factor={f},attention_factor=1",
            f"yarn:factor={f},attention_factor=1+logn"]  # fmt: skip


@dataclass(frozen=True)
class CompareResult:
    variants: list[str]  # labels, in order
    records: list[dict[str, Any]]


def compare(
    model: Any,
    tokenizer: Any,
    variants: Sequence[Variant | str],
    specs: Sequence[EvalSpec],
    store: ResultStore,
    *,
    model_name: str,
    batch_size: int | str | None = "auto",
    progress: Progress | None = None,
    log: Any = None,
) -> CompareResult:
    """Evaluate every spec (task) under every variant; returns the records of the whole matrix."""
    parsed = [v if isinstance(v, Variant) else parse_variant(v) for v in variants]
    labels = [v.label for v in parsed]
    if len(set(labels)) != len(labels):
        raise ValueError(f"a variant is listed twice: {', '.join(labels)}")
    records: list[dict[str, Any]] = []
    for v, label in zip(parsed, labels, strict=True):
        if log:
            log(f"variant {label}")
        scope = nullcontext() if v.spec == "none" else patched(model, v)
        with scope:
            for spec in specs:
                records += evaluate(
                    model, tokenizer, spec, store, model_name=model_name, variant=label, batch_size=batch_size,
                    progress=progress,
                )  # fmt: skip
    return CompareResult(labels, records)


def run_compare(
    model_id: str | None,
    variants_text: str | None,
    tasks: Sequence[str],
    lengths_text: str,
    settings: dict[str, Any],
    *,
    out_dir: Path,
    batch_size: int | str = "auto",
    dtype: str | None = None,
    device: str | None = None,
    device_map: str | None = None,
    attn: str | None = None,
    log: Any = print,
    progress: Any = None,
    command: str = "hf-logscale compare",
) -> tuple[CompareResult, int | None, Path]:
    """Everything ``hf-logscale compare`` does: parse and check the settings, load once, run the matrix, write
    figures and ``report.md``. Returns the result, the training length and the report's path."""
    from .eval.run import TASKS, parse_depths, parse_lengths
    from .models import load, train_length
    from .variants import split_variants

    unknown = [t for t in tasks if t not in TASKS]
    if unknown or not tasks:
        raise ValueError(f"--tasks: unknown task {unknown[0]!r}; use {', '.join(TASKS)}" if unknown else "no --tasks")
    chosen = [parse_variant(v) for v in split_variants(variants_text)] if variants_text else None  # fail fast
    settings = {**settings, "depths": parse_depths(settings["depths"])}
    log(f"Loading {model_id or 'the reference model'} …")
    model, tok = load(model_id, dtype=dtype, device=device, device_map=device_map, attn_implementation=attn)
    tl = train_length(model)
    train_len = tl.value if tl else None
    lengths = parse_lengths(lengths_text, train_len)
    if chosen is None:
        chosen = [parse_variant(v) for v in default_variants(lengths[-1], train_len or lengths[-1])]
    specs = [EvalSpec(task=t, lengths=lengths, **_task_settings(t, settings)) for t in tasks]
    name = model_id or "reference"
    log(f"L = {tl or 'unknown'}")
    log(f"model {name}; tasks {', '.join(tasks)}; lengths {', '.join(map(str, lengths))}")
    log("variants " + ", ".join(v.label for v in chosen))
    log(", ".join(f"{k} {v}" for k, v in settings.items() if v is not None) + f"; batch size {batch_size}")
    store = ResultStore(out_dir)
    log(f"results → {store.dir}")
    with progress() if progress else nullcontext() as bar:
        result = compare(model, tok, chosen, specs, store, model_name=name, batch_size=batch_size, progress=bar,
                         log=log)  # fmt: skip
    if not current().main:
        return result, train_len, store.dir / "report.md"
    figures = make_figures(result, train_len, store.dir, name, tasks)
    report = write_report(
        store.dir, result.records, result.variants, model_name=name, train_len=train_len, command=command,
        settings={"tasks": ", ".join(tasks), "lengths": ", ".join(map(str, lengths)), **settings},
        figures=figures,
    )  # fmt: skip
    return result, train_len, report


def _task_settings(task: str, settings: dict[str, Any]) -> dict[str, Any]:
    keep = {"ppl": ("dataset", "field", "split", "mode", "stride", "max_documents"),
            "passkey": ("depths", "trials", "seed"),
            "needle": ("depths", "trials", "seed", "dataset", "field", "split")}[task]  # fmt: skip
    return {k: settings[k] for k in keep if k in settings}


def make_figures(result: CompareResult, train_len: int | None, out: Path, name: str, tasks) -> dict[str, Path]:
    from .plots import plot_perplexity, plot_position_curves, plot_retrieval_heatmaps

    figs: dict[str, Path] = {}
    if "ppl" in tasks:
        figs["Perplexity vs context length"] = plot_perplexity(
            result.records, result.variants, train_len, out / "ppl_vs_length.png",
            f"{name}: held-out perplexity vs context length",
        )  # fmt: skip
        figs["Per-position loss"] = plot_position_curves(
            result.records, result.variants, train_len, out / "position_loss.png",
            f"{name}: mean NLL by position in the window",
        )  # fmt: skip
    for task in ("passkey", "needle"):
        if task in tasks:
            figs[f"{task.capitalize()} accuracy (length × depth)"] = plot_retrieval_heatmaps(
                result.records, result.variants, task, out / f"{task}_heatmap.png",
                f"{name}: {task} accuracy by length and depth",
            )  # fmt: skip
    return figs
