"""Patch-then-evaluate matrices: variants × tasks × lengths on one loaded model.

Each variant is applied once to the model object, runs every task, and is removed (``applied``: RoPE changes
rebuild only the rotary modules; removal restores the model bit-identically); ``none`` runs the model as loaded.
The rotary state that depends on the longest sequence seen (dynamic NTK, LongRoPE) is put back before every cell
(``evaluate``), so a passkey cell at L after a perplexity cell at 16 L sees the frequencies of L. Every cell goes
through ``evaluation.evaluate`` into one result store, so an interrupted matrix resumes where it stopped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .distributed import process_group
from .errors import UserError
from .evaluation.run import Progress, evaluate
from .evaluation.task import EvalSpec
from .patching import applied, applied_label, patched
from .report import make_figures, write_report
from .results import ResultStore
from .variants import Variant, parse_variant

__all__ = ["DEFAULT_TAUS", "CompareResult", "default_variants", "run_compare", "write_outputs", "yarn_factor"]

DEFAULT_TAUS = (0.5, 1, 2, 4)  # the slope sweep of the default matrix (τ = 0 is YaRN's frequencies alone)


def yarn_factor(max_length: int, train_len: int) -> int:
    """The smallest whole factor F with F·L ≥ the largest length (at least 2)."""
    return max(2, math.ceil(max_length / train_len))


def default_variants(max_length: int, train_len: int) -> list[Variant]:
    """The default matrix, in three groups; F covers the largest length.

    - β_n on the model as it is: ``none``, ``logn``;
    - published recipes: transformers' YaRN (frequencies and its temperature), Qwen-7B's dynamic NTK + logn;
    - the slope sweep where positions are fixed by YaRN's frequencies (attention factor 1): critical τ = 0 (the
      frequencies alone), 0.5, 1 (= logn), 2, 4.
    """
    f = yarn_factor(max_length, train_len)
    frequencies = f"yarn:factor={f},attention_factor=1"
    specs = [
        "none",
        "logn",
        f"yarn:factor={f}",
        "@qwen-dynamic-logn",
        frequencies,
        *(f"{frequencies}+critical:tau={t:g}" for t in DEFAULT_TAUS),
    ]
    return [parse_variant(s) for s in specs]


@dataclass(frozen=True)
class CompareResult:
    variants: list[str]  # labels, in order
    records: list[dict[str, Any]]


def run_compare(
    model: Any,
    tokenizer: Any,
    variants: Sequence[Variant],
    specs: Sequence[EvalSpec],
    store: ResultStore,
    *,
    model_name: str,
    batch_size: int | str | None = "auto",
    progress: Progress | None = None,
    log: Any = None,
) -> CompareResult:
    """Evaluate every spec (task) under every variant; returns the records of the whole matrix."""
    if not variants or not all(isinstance(v, Variant) for v in variants):
        raise UserError(f"`variants` must be a non-empty list of Variants (parse_variant), got {variants!r}")
    if not specs or not all(isinstance(s, EvalSpec) for s in specs):
        raise UserError(f"`specs` must be a non-empty list of EvalSpecs, got {specs!r}")
    labels = [applied_label(model, v) for v in variants]  # none on a saved patched folder: its patch
    if len(set(labels)) != len(labels):
        raise UserError(f"a variant is listed twice: {', '.join(labels)}")
    for v in variants:  # an architecture or a setting this model cannot take fails now, before hours of cells
        if not v.is_identity:
            with patched(model, v):
                pass
    records: list[dict[str, Any]] = []
    for v, label in zip(variants, labels, strict=True):
        if log:
            log(f"variant {v.label}")
        with applied(model, v):
            for spec in specs:
                records += evaluate(
                    model,
                    tokenizer,
                    spec,
                    store,
                    model_name=model_name,
                    variant=label,
                    batch_size=batch_size,
                    progress=progress,
                )
    return CompareResult(labels, records)


def write_outputs(
    result: CompareResult,
    out_dir: Path,
    *,
    model_name: str,
    train_len: int | None,
    settings: dict[str, Any],
    command: str,
) -> Path | None:
    """Figures and ``report.md`` into ``out_dir`` (on the main process only); returns the report's path."""
    if not process_group().main:
        return None
    figures = make_figures(result.records, result.variants, train_len, Path(out_dir), model_name)
    return write_report(
        out_dir,
        result.records,
        result.variants,
        model_name=model_name,
        train_len=train_len,
        command=command,
        settings=settings,
        figures=figures,
    )
