"""Data parallelism for evaluation under ``accelerate launch`` (or any launcher that sets ``WORLD_SIZE``).

Every process holds the whole model; evaluators split their items (perplexity windows, retrieval prompts) across
processes by rank, then combine: summed loss statistics, gathered trials in their original order. Every process
ends with the same numbers; only the main process writes results. With one process all of this is a no-op.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import lru_cache
from typing import Any, TypeVar

import torch

from .errors import UserError

__all__ = ["ProcessGroup", "process_group", "placement"]

T = TypeVar("T")


class ProcessGroup:
    def __init__(self, rank: int = 0, world: int = 1):
        self.rank, self.world = rank, world

    @property
    def main(self) -> bool:
        return self.rank == 0

    def shard(self, items: Sequence[T]) -> list[tuple[int, T]]:
        """This process's share of ``items``, with their indices."""
        return [(i, x) for i, x in enumerate(items) if i % self.world == self.rank]

    def sum_(self, *tensors: torch.Tensor) -> None:
        """In-place sum over processes (CPU tensors; gloo and nccl both take them through a copy)."""
        if self.world == 1:
            return
        import torch.distributed as td

        for t in tensors:
            moved = t.to(_comm_device())
            td.all_reduce(moved)
            t.copy_(moved.cpu())

    def gather(self, pairs: list[tuple[int, T]]) -> list[T]:
        """Every process's (index, item) pairs, merged in index order, on every process."""
        if self.world == 1:
            return [x for _, x in sorted(pairs, key=lambda p: p[0])]
        import torch.distributed as td

        parts: list[Any] = [None] * self.world
        td.all_gather_object(parts, pairs)
        return [x for _, x in sorted((p for part in parts for p in part), key=lambda p: p[0])]

    def any(self, flag: bool) -> bool:
        """True on every process if ``flag`` is true on any (e.g. one process ran out of memory)."""
        if self.world == 1:
            return flag
        t = torch.tensor([1.0 if flag else 0.0], dtype=torch.float64)
        self.sum_(t)
        return bool(t.item() > 0)

    def broadcast(self, obj: T) -> T:
        """The main process's ``obj`` on every process."""
        if self.world == 1:
            return obj
        import torch.distributed as td

        box = [obj]
        td.broadcast_object_list(box, src=0)
        return box[0]


def _comm_device() -> torch.device:
    import torch.distributed as td

    if td.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


@lru_cache(maxsize=1)
def process_group() -> ProcessGroup:
    """The process group this process belongs to. A launcher (``accelerate launch``, ``torchrun``) that set
    ``WORLD_SIZE`` > 1 gets a group initialised from its environment — nccl on GPUs, gloo on CPU — unless one
    exists already (e.g. made by accelerate); otherwise a single process."""
    import torch.distributed as td

    if not (td.is_available() and td.is_initialized()):
        if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
            return ProcessGroup()
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        td.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    return ProcessGroup(td.get_rank(), td.get_world_size())


def placement(device: str | None, device_map: str | None = None) -> str | None:
    """The device this process loads the model on: under a launcher one per process (its local GPU, or the CPU);
    alone, CUDA when available unless told otherwise (``device_map`` leaves placement to accelerate)."""
    dist = process_group()
    if dist.world == 1:
        return "cuda" if device is None and device_map is None and torch.cuda.is_available() else device
    if device_map is not None:
        raise UserError("--device-map splits one model over GPUs; under accelerate launch each process holds a copy")
    if device is None and torch.cuda.is_available():
        device = f"cuda:{os.environ.get('LOCAL_RANK', '0')}"
    return device
