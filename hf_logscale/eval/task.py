"""The task protocol and registry: what ``evaluate``, ``compare``, the report, the figures and lm-eval need to know
about a long-context task.

A task is one small class registered with ``@register_task``: its metrics (with direction), which settings make
a cell, how to load its data once and run one (length, depth) cell, the per-length table ``hf-logscale eval``
prints, the tables and plain sentences of the report, and its figures (declared by kind; drawn by
``hf_logscale.report.figures``). Adding a task is one module like ``hf_logscale/eval/tasks/passkey.py``.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from .. import checks
from ..errors import UserError
from ..tables import Table

if TYPE_CHECKING:
    from .run import EvalSpec

__all__ = ["TASKS", "CellResult", "Figure", "Metric", "Task", "get_task", "register_task"]

Advance = Callable[[int], None]


@dataclass(frozen=True)
class Metric:
    name: str
    label: str
    higher_is_better: bool
    fmt: str = "{:.2f}"


@dataclass(frozen=True)
class Figure:
    """A figure the report draws: ``lines`` (metric vs length, one line per variant), ``heatmap`` (length × depth
    per variant) or ``positions`` (the per-position loss curve stored with a metric)."""

    kind: str
    metric: str
    caption: str
    filename: str
    log_scale: bool = False  # lines: logarithmic value axis


@dataclass
class CellResult:
    metrics: dict[str, float]
    counts: dict[str, Any] = field(default_factory=dict)
    per_metric: dict[str, dict[str, Any]] = field(default_factory=dict)  # extra fields of one metric's record


class Task(abc.ABC):
    name: ClassVar[str]
    title: ClassVar[str]  # the report's section heading
    description: ClassVar[str]
    metrics: ClassVar[tuple[Metric, ...]]
    headline: ClassVar[str]  # the metric of compare's tables and line figures
    settings_fields: ClassVar[tuple[str, ...]]  # EvalSpec fields that change a result: part of a cell's identity
    uses_depths: ClassVar[bool] = False
    figures: ClassVar[tuple[Figure, ...]] = ()
    report_tables: ClassVar[tuple[tuple[str, str], ...]] = ()  # (metric, sentence above its table) in report.md

    def metric(self, name: str) -> Metric:
        return next(m for m in self.metrics if m.name == name)

    def settings(self, spec: EvalSpec) -> dict[str, Any]:
        return {k: getattr(spec, k) for k in self.settings_fields}

    def dataset(self, spec: EvalSpec) -> str:
        """The data label of the records."""
        return spec.dataset

    def cells(self, spec: EvalSpec) -> list[tuple[int, float | None]]:
        if self.uses_depths:
            return [(n, d) for n in spec.lengths for d in spec.depths]
        return [(n, None) for n in spec.lengths]

    @abc.abstractmethod
    def prepare(self, tokenizer: Any, spec: EvalSpec, lengths: Sequence[int]) -> Any:
        """Load and tokenise the data once for these lengths; refuse lengths the data cannot supply."""

    def items(self, data: Any, spec: EvalSpec, length: int) -> int:
        """How many units of work one cell at ``length`` is (for progress)."""
        return spec.trials

    @abc.abstractmethod
    def run(
        self,
        model: Any,
        tokenizer: Any,
        spec: EvalSpec,
        data: Any,
        length: int,
        depth: float | None,
        batch_size: int | str,
        advance: Advance | None,
    ) -> CellResult:
        """Evaluate one cell; raise ``OutOfMemory`` when even one item does not fit."""

    @abc.abstractmethod
    def table(self, records: Sequence[dict[str, Any]], train_len: int | None) -> Table:
        """The per-length table ``hf-logscale eval`` prints for one variant's records."""

    def reading(self, records: Sequence[dict[str, Any]], variants: Sequence[str], train_len: int | None) -> list[str]:
        """Plain sentences for the report, derived from the numbers."""
        return []


TASKS: dict[str, Task] = {}


def register_task(cls: type[Task]) -> type[Task]:
    TASKS[cls.name] = cls()
    return cls


def get_task(name: str) -> Task:
    try:
        return TASKS[name]
    except KeyError:
        hint = checks.did_you_mean(name, TASKS)
        raise UserError(f"unknown task {name!r}.{hint} Tasks: {', '.join(TASKS)}") from None
