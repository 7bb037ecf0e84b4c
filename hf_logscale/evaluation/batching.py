"""Running items in batches that shrink on out-of-memory, and the model's input device."""

from __future__ import annotations

import gc
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import torch

from ..distributed import process_group
from ..errors import UserError

__all__ = ["OutOfMemory", "auto_batch_size", "in_batches", "input_device", "is_oom", "sharded"]

T = TypeVar("T")
R = TypeVar("R")
TOKENS_PER_BATCH = 32768  # "auto" batch size: about this many tokens per forward pass


class OutOfMemory(RuntimeError):
    """Even one item at a time does not fit; the evaluator records the cell as out of memory."""


def is_oom(err: BaseException) -> bool:
    if isinstance(err, torch.OutOfMemoryError):
        return True
    text = str(err)
    return isinstance(err, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


def auto_batch_size(batch_size: int | str | None, tokens: int) -> int:
    """``"auto"``/``None`` → about ``TOKENS_PER_BATCH`` tokens per batch; an integer is taken as given."""
    if batch_size in (None, "auto"):
        return max(1, TOKENS_PER_BATCH // max(1, tokens))
    size = int(batch_size)
    if size < 1:
        raise UserError(f"`batch_size` must be ≥ 1 or 'auto', got {batch_size}")
    return size


def in_batches(
    items: Sequence[T],
    batch_size: int,
    fn: Callable[[Sequence[T]], list[R]],
    advance: Callable[[int], None] | None = None,
) -> list[R]:
    """``fn`` over ``items`` in batches; on out-of-memory the batch size halves and the batch is retried.
    Raises ``OutOfMemory`` when a single item does not fit."""
    results: list[R] = []
    i = 0
    while i < len(items):
        chunk = items[i : i + batch_size]
        try:
            results.extend(fn(chunk))
        except Exception as err:
            if not is_oom(err):
                raise
            del err
            _free()
            if batch_size == 1:
                raise OutOfMemory("out of memory with batch size 1") from None
            batch_size = max(1, batch_size // 2)
            continue
        i += len(chunk)
        if advance is not None:
            advance(len(chunk))
    return results


def sharded(
    items: Sequence[T],
    batch_size: int | str | None,
    tokens: int,
    fn: Callable[[Sequence[T]], list[R]],
    advance: Callable[[int], None] | None = None,
) -> list[R]:
    """``in_batches`` over this process's share of ``items`` (every item is its own share in one process; under
    ``accelerate launch`` each process takes every world-th item); every process gets all results, in item order.
    Raises ``OutOfMemory`` on every process when a single item did not fit on any of them."""
    group = process_group()
    mine = group.shard(items)
    results: list[R] = []
    try:
        results = in_batches([x for _, x in mine], auto_batch_size(batch_size, tokens), fn, advance)
    except OutOfMemory:
        pass
    if group.any(len(results) < len(mine)):
        raise OutOfMemory("out of memory with batch size 1")
    return group.gather([(i, r) for (i, _), r in zip(mine, results, strict=True)])


def _free() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def input_device(model: Any) -> torch.device:
    """Where input ids go: the embedding's device (also right under ``device_map='auto'``)."""
    return model.get_input_embeddings().weight.device
