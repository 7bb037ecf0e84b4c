"""The evaluation driver: a task over a grid of cells (length × depth), each finished cell appended to the result
store, finished cells skipped on a re-run, an out-of-memory cell recorded as such while the rest goes on."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from ..distributed import current
from ..models import train_length
from ..results import ResultStore, cell_id, versions
from .batching import OutOfMemory

__all__ = ["METRICS", "TASKS", "EvalSpec", "evaluate", "parse_depths", "parse_lengths"]

TASKS = ("ppl", "passkey", "needle")
METRICS = {
    "ppl": ("perplexity", "nll", "bits_per_byte"),
    "passkey": ("accuracy", "tf_accuracy", "tf_token_accuracy", "tf_logprob"),
    "needle": ("accuracy", "tf_accuracy", "tf_token_accuracy", "tf_logprob"),
}
DEFAULT_DEPTHS = (0.0, 0.25, 0.5, 0.75, 1.0)
Progress = Callable[[str, int], Callable[[int], None]]  # (description, total items) -> advance(k)

_LENGTH = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKxX]?)\s*$")


def parse_lengths(text: str, train_len: int | None = None) -> tuple[int, ...]:
    """``"256,512,1k,2k"`` (k = 1024) or multiples of the training length ``"1x,2x,16x"``; sorted, unique."""
    out = set()
    for part in text.split(","):
        if not part.strip():
            continue
        m = _LENGTH.match(part)
        if not m:
            raise ValueError(f"--lengths: {part.strip()!r} is not a length; write e.g. 256,1k,4k or 1x,2x,4x")
        value, unit = float(m.group(1)), m.group(2).lower()
        if unit == "x":
            if train_len is None:
                raise ValueError("--lengths with x (multiples of the training length) needs a known training length")
            value *= train_len
        elif unit == "k":
            value *= 1024
        if value != int(value) or value < 2:
            raise ValueError(f"--lengths: {part.strip()!r} is not a whole number of tokens ≥ 2")
        out.add(int(value))
    if not out:
        raise ValueError("--lengths is empty")
    return tuple(sorted(out))


def parse_depths(text: str) -> tuple[float, ...]:
    try:
        depths = tuple(sorted({float(x) for x in text.split(",") if x.strip()}))
    except ValueError:
        raise ValueError(f"--depths must be comma-separated fractions in [0, 1], got {text!r}") from None
    if not depths or not all(0.0 <= d <= 1.0 for d in depths):
        raise ValueError(f"--depths must be comma-separated fractions in [0, 1], got {text!r}")
    return depths


@dataclass(frozen=True)
class EvalSpec:
    """What to measure; every field that changes a result is part of the cells' identity (resume)."""

    task: str
    lengths: tuple[int, ...]
    depths: tuple[float, ...] = DEFAULT_DEPTHS
    trials: int = 10
    seed: int = 0
    dataset: str = "sample"
    field: str | None = None
    split: str | None = None
    mode: str = "truncate"
    stride: int | None = None
    max_documents: int | None = None
    max_new_tokens: int = 10

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"unknown task {self.task!r}; use one of {', '.join(TASKS)}")
        if not self.lengths:
            raise ValueError("no lengths to evaluate")

    def settings(self) -> dict[str, Any]:
        s = {"dataset": self.dataset, "field": self.field, "split": self.split}
        if self.task == "ppl":
            return {**s, "mode": self.mode, "stride": self.stride, "max_documents": self.max_documents}
        retrieval = {"trials": self.trials, "seed": self.seed, "max_new_tokens": self.max_new_tokens}
        return retrieval if self.task == "passkey" else {**s, **retrieval}

    def cells(self) -> list[tuple[int, float | None]]:
        if self.task == "ppl":
            return [(n, None) for n in self.lengths]
        return [(n, d) for n in self.lengths for d in self.depths]


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
    """Run ``spec`` on ``model`` into ``store``; returns the records of every cell of the grid (resumed ones
    included), in grid order."""
    if tokenizer is None:
        raise ValueError("evaluation needs a tokenizer; the model folder has none")
    dataset = spec.dataset if spec.task != "passkey" else "passkey-template"
    cells = [
        {"model": model_name, "variant": variant, "task": spec.task, "dataset": dataset, "length": n, "depth": d,
         "settings": spec.settings()}
        for n, d in spec.cells()
    ]  # fmt: skip
    dist = current()  # under `accelerate launch`: every process computes its share, the main process writes
    done = dist.broadcast(store.finished() if dist.main else None)
    todo = [c for c in cells if cell_id(c) not in done]
    if not dist.main:
        progress = None
    data = _prepare(tokenizer, spec, sorted({c["length"] for c in todo})) if todo else None
    tl = train_length(model)
    meta = {"seed": spec.seed, "versions": versions(), "device": str(_device(model)), "dtype": str(model.dtype),
            "train_len": tl.value if tl else None, "train_len_source": tl.source if tl else None}  # fmt: skip
    for cell in todo:
        n, d = cell["length"], cell["depth"]
        items = data["windows"](n) if spec.task == "ppl" else spec.trials
        label = f"{spec.task} n={n}" + (f" depth={d:g}" if d is not None else "")
        advance = _scaled(progress(label, items), dist.world) if progress else None
        t0 = time.perf_counter()
        try:
            metrics, counts, per_metric = _run_cell(model, tokenizer, spec, data, n, d, batch_size, advance)
            status = "ok"
        except OutOfMemory:
            metrics = {m: None for m in METRICS[spec.task]}
            counts, per_metric, status = {}, {}, "oom"
        if dist.main:
            store.add(
                cell, metrics, status=status, counts=counts, seconds=round(time.perf_counter() - t0, 3),
                per_metric=per_metric, **meta, processes=dist.world,
            )  # fmt: skip
    if not dist.main:
        return dist.broadcast(None)
    store.write_summary()
    ids = {cell_id(c): i for i, c in enumerate(cells)}
    found = sorted((r for r in store.records() if r.get("cell") in ids), key=lambda r: ids[r["cell"]])
    return dist.broadcast(found)


def _scaled(advance: Callable[[int], None], world: int) -> Callable[[int], None]:
    """The main process sees its own share of the items; the others advance at the same pace."""
    return advance if world == 1 else (lambda k: advance(k * world))


def _device(model: Any):
    from .batching import input_device

    return input_device(model)


def _prepare(tokenizer: Any, spec: EvalSpec, lengths: list[int]) -> dict[str, Any]:
    """Load and tokenise the data once; fail before any work if a length is more than the data can supply."""
    if spec.task == "passkey":
        from ..data.passkey import min_length

        if lengths[0] < min_length(tokenizer):
            raise ValueError(f"a passkey prompt needs at least {min_length(tokenizer)} tokens; got length {lengths[0]}")
        return {}
    from ..data.sources import load_documents

    docs = load_documents(spec.dataset, field=spec.field, split=spec.split)
    if spec.task == "needle":
        from .needle import Haystack

        haystack = Haystack(tokenizer, [d.text for d in docs])
        if lengths[-1] > haystack.tokens:
            raise ValueError(
                f"dataset {spec.dataset!r} has {haystack.tokens} tokens of haystack; length {lengths[-1]} needs more"
            )
        return {"haystack": haystack}
    from .perplexity import perplexity_windows, tokenize_documents

    tokens = tokenize_documents(tokenizer, [d.text for d in docs])

    def windows(n: int) -> int:
        w, _, _ = perplexity_windows(tokens, n, spec.mode, spec.stride, tokenizer.bos_token_id, spec.max_documents)
        return len(w)

    too_long = [n for n in lengths if not windows(n)]
    if too_long:
        longest = max((len(t) for t in tokens), default=0)
        raise ValueError(
            f"no document of {spec.dataset!r} is long enough for length {too_long[0]} ({len(tokens)} documents, "
            f"longest {longest} tokens); drop lengths ≥ {too_long[0]} or use longer documents"
        )
    return {"tokens": tokens, "windows": windows}


def _run_cell(model, tokenizer, spec: EvalSpec, data, n: int, depth: float | None, batch_size, advance):
    if spec.task == "ppl":
        from .perplexity import perplexity

        r = perplexity(
            model, tokenizer, data["tokens"], n, mode=spec.mode, stride=spec.stride, batch_size=batch_size,
            max_documents=spec.max_documents, advance=advance,
        )  # fmt: skip
        metrics = {"perplexity": r.perplexity, "nll": r.nll, "bits_per_byte": r.bits_per_byte}
        counts = {"tokens": r.tokens, "bytes": r.bytes, "documents": r.documents, "skipped": r.skipped,
                  "windows": r.windows}  # fmt: skip
        return metrics, counts, {"nll": {"curve": r.curve}}
    kwargs = dict(trials=spec.trials, seed=spec.seed, batch_size=batch_size, max_new_tokens=spec.max_new_tokens)
    if spec.task == "passkey":
        from .passkey import passkey

        r = passkey(model, tokenizer, n, depth, advance=advance, **kwargs)
    else:
        from .needle import needle

        r = needle(model, tokenizer, data["haystack"], n, depth, advance=advance, **kwargs)
    metrics = {m: getattr(r, m) for m in METRICS[spec.task]}
    trials = [asdict(t) for t in r.trials]
    return metrics, {"trials": len(r.trials)}, {"accuracy": {"trials": trials}}
