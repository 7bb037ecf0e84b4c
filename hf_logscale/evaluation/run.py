"""The evaluation driver: a task (from the registry) over a grid of cells (length × depth), each finished cell
appended to the result store, finished cells skipped on a re-run, an out-of-memory cell recorded as such while the
rest goes on."""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from typing import Any

from ..distributed import process_group
from ..errors import UserError
from ..models import train_length
from ..patching import applied, applied_label
from ..patching.rotary_state import reset_dynamic_rope
from ..results import ResultStore, cell_id, versions
from ..variants import Variant
from .batching import OutOfMemory, input_device
from .task import EvalSpec, get_task

__all__ = [
    "Progress",
    "applied_label",
    "evaluate",
    "length_parts",
    "parse_depths",
    "parse_lengths",
    "run_eval",
]

Progress = Callable[[str, int], Callable[[int], None]]  # (description, total items) -> advance(k)

_LENGTH = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKxX]?)\s*$")


def length_parts(text: str) -> list[tuple[str, float, str]]:
    """The parts of a ``--lengths`` text, checked for form (before the model, and so L, is known)."""
    if not isinstance(text, str):
        raise UserError(f"--lengths must be text such as 256,1k or 1x,2x, got {text!r}")
    parts = []
    for part in text.split(","):
        if not part.strip():
            continue
        m = _LENGTH.match(part)
        if not m:
            raise UserError(f"--lengths: {part.strip()!r} is not a length; write e.g. 256,1k,4k or 1x,2x,4x")
        parts.append((part.strip(), float(m.group(1)), m.group(2).lower()))
    if not parts:
        raise UserError("--lengths is empty; write e.g. 256,1k,4k or 1x,2x,4x")
    return parts


def parse_lengths(text: str, train_len: int | None = None) -> tuple[int, ...]:
    """``"256,512,1k,2k"`` (k = 1024) or multiples of the training length ``"1x,2x,16x"``; sorted, unique."""
    out = set()
    for part, value, unit in length_parts(text):
        if unit == "x":
            if train_len is None:
                raise UserError("--lengths with x (multiples of the training length) needs a known training length")
            value *= train_len
        elif unit == "k":
            value *= 1024
        if value != int(value) or value < 2:
            raise UserError(f"--lengths: {part!r} is not a whole number of tokens ≥ 2")
        out.add(int(value))
    return tuple(sorted(out))


def parse_depths(text: str) -> tuple[float, ...]:
    try:
        depths = tuple(sorted({float(x) for x in text.split(",") if x.strip()}))
    except ValueError:
        raise UserError(f"--depths must be comma-separated fractions in [0, 1], got {text!r}") from None
    if not depths or not all(0.0 <= d <= 1.0 for d in depths):
        raise UserError(f"--depths must be comma-separated fractions in [0, 1], got {text!r}")
    return depths


def evaluate(
    model: Any,
    tokenizer: Any,
    spec: EvalSpec,
    store: ResultStore,
    *,
    model_name: str,
    variant: str = "none",
    batch_size: int | str | None = "auto",
    progress: Progress | None = None,
) -> list[dict[str, Any]]:
    """Run ``spec`` on ``model`` as it is into ``store``, its records labelled ``variant``; returns the records of
    every cell of the grid (resumed ones included), in grid order."""
    if tokenizer is None:
        raise UserError("evaluation needs a tokenizer; the model folder has none")
    task = get_task(spec.task)
    settings, dataset = task.identity(spec), task.dataset(spec)
    cells = [
        {
            "model": model_name,
            "variant": variant,
            "task": task.name,
            "dataset": dataset,
            "length": n,
            "depth": d,
            "settings": settings,
        }
        for n, d in task.cells(spec)
    ]
    dist = process_group()  # under `accelerate launch`: every process computes its share, the main process writes
    done = dist.broadcast(store.finished() if dist.main else None)
    todo = [c for c in cells if cell_id(c) not in done]
    if not dist.main:
        progress = None
    data = task.prepare(tokenizer, spec, sorted({c["length"] for c in todo})) if todo else None
    train_len_info = train_length(model)
    meta = {
        "seed": spec.settings.get("seed"),  # None: the task draws nothing at random
        "versions": versions(),
        "device": str(input_device(model)),
        "dtype": str(model.dtype),
        "train_len": train_len_info.value if train_len_info else None,
        "train_len_source": train_len_info.source if train_len_info else None,
    }
    for cell in todo:
        reset_dynamic_rope(model)  # every cell computes as on a fresh model, whatever ran before it
        n, d = cell["length"], cell["depth"]
        label = f"{task.name} n={n}" + (f" depth={d:g}" if d is not None else "")
        advance = _scaled(progress(label, task.items(data, spec, n)), dist.world) if progress else None
        t0 = time.perf_counter()
        try:
            result = task.run(model, tokenizer, spec, data, n, d, batch_size, advance)
            metrics, counts, per_metric, status = result.metrics, result.counts, result.per_metric, "ok"
            _require_finite(label, metrics)
        except OutOfMemory:
            metrics = {m.name: None for m in task.metrics}
            counts, per_metric, status = {}, {}, "oom"
        if dist.main:
            store.add(
                cell,
                metrics,
                status=status,
                counts=counts,
                seconds=round(time.perf_counter() - t0, 3),
                per_metric=per_metric,
                **meta,
                processes=dist.world,
            )
    if not dist.main:
        return dist.broadcast(None)
    store.write_summary()
    ids = {cell_id(c): i for i, c in enumerate(cells)}
    found = sorted((r for r in store.records() if r.get("cell") in ids), key=lambda r: ids[r["cell"]])
    return dist.broadcast(found)


def run_eval(
    model: Any,
    tokenizer: Any,
    variant: Variant,
    spec: EvalSpec,
    store: ResultStore,
    *,
    model_name: str,
    batch_size: int | str | None = "auto",
    progress: Progress | None = None,
) -> list[dict[str, Any]]:
    """``evaluate`` under ``variant`` (applied for the run, removed after; ``none`` runs the model as it is, and
    its records carry the patch the model came with, if any, e.g. a saved patched folder)."""
    with applied(model, variant):
        return evaluate(
            model,
            tokenizer,
            spec,
            store,
            model_name=model_name,
            variant=applied_label(model, variant),
            batch_size=batch_size,
            progress=progress,
        )


def _require_finite(label: str, metrics: dict[str, Any]) -> None:
    """A non-finite score means non-finite logits (weights, or a scale that overflowed): an error, never a record."""
    for name, value in metrics.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise UserError(
                f"{label}: {name} is {value}: the model produced non-finite logits (check its weights and the "
                "variant's scale); nothing was recorded for this cell"
            )


def _scaled(advance: Callable[[int], None], world: int) -> Callable[[int], None]:
    """The main process sees its own share of the items; the others advance at the same pace."""
    return advance if world == 1 else (lambda k: advance(k * world))
