"""The task protocol, its registry and ``EvalSpec``: what ``evaluate``, ``compare``, the report, the figures and
lm-eval need to know about a long-context task.

A task is one small class registered with ``@register_task``: its metrics (with direction), the settings it takes
(each declared with its default and its check), how to load its data once and run one (length, depth) cell, the
per-length table ``hf-logscale eval`` prints, the tables and plain sentences of the report, and its figures
(declared by kind; drawn by ``hf_logscale.report.figures``). Adding a task is one module in
``hf_logscale/evaluation/tasks/`` (found there by name, see its ``__init__``), like ``passkey.py``.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from types import MappingProxyType
from typing import Any, ClassVar

from .. import checks
from ..errors import UserError
from ..tables import Table

__all__ = [
    "CORPUS",
    "MAX_LENGTH",
    "TASKS",
    "CellResult",
    "EvalSpec",
    "Figure",
    "Metric",
    "Setting",
    "Task",
    "get_task",
    "register_task",
]

MAX_LENGTH = 2**24  # tokens in one context (16.8 M): far beyond any model, short of an allocation that cannot be

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


@dataclass(frozen=True)
class Setting:
    """A setting a task takes: the keyword of ``EvalSpec`` and the CLI's ``--name``, its default, and its check
    ``(name, value) -> value`` (raising ``UserError``; ``None`` passes when the default is ``None``). A setting
    with ``identity`` changes a result, so it is part of a cell's identity (resume); ``depths`` is not: the depth
    is a coordinate of the cell itself."""

    name: str
    default: Any
    check: Callable[[str, Any], Any]
    identity: bool = True

    def value(self, given: Any) -> Any:
        return given if given is None and self.default is None else self.check(self.name, given)


CORPUS = (  # the settings of a task that reads a corpus (hf_logscale.data.sources.load_documents)
    Setting("dataset", "sample", checks.text),
    Setting("field", None, checks.text),
    Setting("split", None, checks.text),
)


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
    settings: ClassVar[tuple[Setting, ...]] = ()  # what EvalSpec takes for this task, in the CLI's order
    figures: ClassVar[tuple[Figure, ...]] = ()
    report_tables: ClassVar[tuple[tuple[str, str], ...]] = ()  # (metric, sentence above its table) in report.md

    def metric(self, name: str) -> Metric:
        return next(m for m in self.metrics if m.name == name)

    @property
    def uses_depths(self) -> bool:
        return any(s.name == "depths" for s in self.settings)

    def identity(self, spec: EvalSpec) -> dict[str, Any]:
        """The settings that change a result: part of each cell's identity."""
        return {s.name: spec.settings[s.name] for s in self.settings if s.identity}

    def check(self, settings: dict[str, Any]) -> None:  # noqa: B027 (most tasks have none)
        """Rules between settings (each setting's own range is its ``Setting.check``)."""

    def dataset(self, spec: EvalSpec) -> str:
        """The data label of the records: the corpus, for a task that reads one."""
        return spec.settings.get("dataset", self.name)

    def cells(self, spec: EvalSpec) -> list[tuple[int, float | None]]:
        if self.uses_depths:
            return [(n, d) for n in spec.lengths for d in spec.depths]
        return [(n, None) for n in spec.lengths]

    @abc.abstractmethod
    def prepare(self, tokenizer: Any, spec: EvalSpec, lengths: Sequence[int]) -> Any:
        """Load and tokenise the data once for these lengths; refuse lengths the data cannot supply."""

    def items(self, data: Any, spec: EvalSpec, length: int) -> int:
        """How many units of work one cell at ``length`` is (for progress)."""
        return spec.settings.get("trials", 1)

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

    def findings(self, records: Sequence[dict[str, Any]], variants: Sequence[str], train_len: int | None) -> list[str]:
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


class EvalSpec:
    """What to measure: a registered task, its lengths, and the settings that task takes (``EvalSpec("ppl",
    (1024,), mode="sliding")``); a setting not given takes the task's default, one the task does not take is
    refused. Settings read as attributes (``spec.mode``) or from ``spec.settings``."""

    __slots__ = ("lengths", "settings", "task")

    def __init__(self, task: str, lengths: Sequence[int], **settings: Any) -> None:
        t = get_task(task)
        known = {s.name: s for s in t.settings}
        for name in settings:
            if name not in known:
                hint = checks.did_you_mean(name, known)
                takes = ", ".join(known) or "no settings"
                raise UserError(f"task {task} takes no setting `{name}`.{hint} It takes: {takes}")
        lengths = checks.sequence("lengths", lengths, lambda n, v: checks.integer(n, v, minimum=2, maximum=MAX_LENGTH))
        values = {name: s.value(settings.get(name, s.default)) for name, s in known.items()}
        t.check(values)
        object.__setattr__(self, "task", task)
        object.__setattr__(self, "lengths", lengths)
        object.__setattr__(self, "settings", MappingProxyType(values))

    @classmethod
    def taking(cls, task: str, lengths: Sequence[int], settings: dict[str, Any]) -> EvalSpec:
        """The spec of ``task`` from a set of settings several tasks share (compare's options): the task takes
        those it declares."""
        names = {s.name for s in get_task(task).settings}
        return cls(task, lengths, **{k: v for k, v in settings.items() if k in names})

    def __getattr__(self, name: str) -> Any:
        if name in EvalSpec.__slots__:  # not set yet
            raise AttributeError(name)
        try:
            return self.settings[name]
        except KeyError:
            raise AttributeError(f"task {self.task} has no setting {name!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("an EvalSpec is frozen; make a new one")

    def __reduce__(self) -> tuple:
        return partial(EvalSpec, **self.settings), (self.task, self.lengths)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, EvalSpec):
            return NotImplemented
        return (self.task, self.lengths, dict(self.settings)) == (other.task, other.lengths, dict(other.settings))

    def __hash__(self) -> int:
        return hash((self.task, self.lengths, tuple(self.settings.items())))

    def __repr__(self) -> str:
        given = "".join(f", {k}={v!r}" for k, v in self.settings.items())
        return f"EvalSpec({self.task!r}, {self.lengths!r}{given})"
