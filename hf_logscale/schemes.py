"""β_n scaling schemes: pure maps from key counts n to query multipliers s(n).

A scheme answers one question: by how much should a query that can see ``n`` keys have its attention logits
multiplied? Each scheme is a small frozen dataclass whose fields are its parameters; ``__post_init__`` validates
them and ``__call__`` maps a float64 tensor of key counts to a tensor of scales of the same shape.

``L`` (``train_len``) is the context length the model was trained for. Formulas follow the original
sources: Qwen-7B ``use_logn_attn`` (``math.log(i, seq_length) if i > seq_length else 1``), Chen et al.
2025 (β_n = γ log n), Nakanishi 2025 (SSMax), Llama 4 ``attn_temperature_tuning`` and YaRN's temperature.

Adding a scheme: one dataclass below with ``name``, ``formula`` and ``origin``, decorated with ``@register``.
"""

from __future__ import annotations

import abc
import dataclasses
import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from . import checks
from .errors import UserError
from .grammar import ROPE_KIND_NAMES

__all__ = ["Scheme", "SCHEMES", "get_scheme", "CustomScheme"]

SCHEMES: dict[str, type[Scheme]] = {}


def register(cls: type[Scheme]) -> type[Scheme]:
    """Add a scheme to the registry. Its name must be new and not a RoPE kind's (a variant part is read as the RoPE
    kind first), and every parameter must be declared with ``_param`` (its range is what validates it)."""
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name or name in ROPE_KIND_NAMES or name in SCHEMES:
        taken = "a RoPE kind" if name in ROPE_KIND_NAMES else "taken" if name in SCHEMES else "not a name"
        raise UserError(f"cannot register scheme {name!r}: the name is {taken}; choose another")
    bare = [f.name for f in cls.params() if "range" not in f.metadata]
    if bare:
        raise UserError(
            f"scheme {name!r}: declare parameter {bare[0]!r} with _param(default, help, minimum=, maximum=)"
        )
    SCHEMES[name] = cls
    return cls


MAX_TRAIN_LEN = 10**12  # no model is trained on more tokens in one sequence; beyond it only overflow is left


def _param(
    default: Any,
    help_text: str,
    *,
    minimum: float,
    maximum: float,
    integer: bool = False,
    required: bool = False,
) -> Any:
    """A scheme parameter: its default, what it means, and the range ``Scheme.__post_init__`` enforces (upper
    bounds sit where s(n) would stop being a usable float32 multiplier for any n ≤ 10^12)."""
    kind = "an integer" if integer else "a number"
    range_text = f"{kind} in [{minimum:g}, {maximum:g}]" + (" (required)" if required else "")
    meta = {"help": help_text, "range": range_text, "min": minimum, "max": maximum, "integer": integer}
    return field(default=default, metadata={**meta, "required": required})


@dataclass(frozen=True)
class Scheme(abc.ABC):
    """Base class. Subclasses set ``name``, ``formula``, ``origin`` and implement ``__call__``."""

    name: ClassVar[str]
    formula: ClassVar[str]
    origin: ClassVar[str]
    uses_train_len: ClassVar[bool] = True
    identity: ClassVar[bool] = False  # s ≡ 1: the wrapper may skip the multiply

    train_len: int | None = _param(
        None, "L, the context length the model was trained for", minimum=2, maximum=MAX_TRAIN_LEN, integer=True
    )

    def __post_init__(self) -> None:
        for name, value in self.check({f.name: getattr(self, f.name) for f in self.params()}).items():
            object.__setattr__(self, name, value)  # 8192.0 from a spec or recipe becomes 8192

    @classmethod
    def check(cls, values: dict[str, Any]) -> dict[str, Any]:
        """``values`` (defaults filled in for the parameters not given) checked against the ranges the fields
        declare — one rule for all schemes, usable without building one; returns them normalised."""
        out = {}
        for f in cls.params():
            meta = f.metadata
            value = values.get(f.name, f.default)
            if value is None and not meta["required"]:  # train_len: resolved from the model when patching
                out[f.name] = value
                continue
            check = checks.integer if meta["integer"] else checks.number
            try:
                if isinstance(value, (list, tuple)) and f.name != "train_len":  # one value per query head
                    if not value:
                        raise UserError(f"`{f.name}` per head must list one value per head, got []")
                    out[f.name] = tuple(check(f.name, v, minimum=meta["min"], maximum=meta["max"]) for v in value)
                else:
                    out[f.name] = check(f.name, value, minimum=meta["min"], maximum=meta["max"])
            except ValueError as err:
                required = " (required, e.g. yarn-temp:f=4)" if meta["required"] and value is None else ""
                raise UserError(f"{cls.name}: {err}{required}") from None
        counts = {len(v) for k, v in out.items() if isinstance(v, tuple)}
        if len(counts) > 1:
            raise UserError(f"{cls.name}: per-head parameters must all list the same number of heads, got {counts}")
        return out

    @classmethod
    def params(cls) -> list[dataclasses.Field]:
        """The scheme's parameters (``train_len`` first when the formula uses L)."""
        fields = [f for f in dataclasses.fields(cls) if f.name != "train_len"]
        return ([f for f in dataclasses.fields(cls) if f.name == "train_len"] if cls.uses_train_len else []) + fields

    @abc.abstractmethod
    def __call__(self, n: torch.Tensor) -> torch.Tensor:
        """Scales for key counts ``n`` (float64 tensor, any shape, values ≥ 1); same shape and dtype."""

    @functools.cached_property
    def heads(self) -> int | None:
        """How many query heads the parameters are given for (a parameter may list one value per head); ``None``
        when every parameter is one value for all heads."""
        lengths = [len(getattr(self, f.name)) for f in self.params() if isinstance(getattr(self, f.name), tuple)]
        return lengths[0] if lengths else None

    @functools.cached_property
    def head_schemes(self) -> tuple[Scheme, ...]:
        """The scheme of each head: its own value of each per-head parameter."""
        per_head = {f.name: getattr(self, f.name) for f in self.params() if isinstance(getattr(self, f.name), tuple)}
        return tuple(dataclasses.replace(self, **{k: v[h] for k, v in per_head.items()}) for h in range(self.heads))

    def values(self, n: torch.Tensor) -> torch.Tensor:
        """s(n): ``n``'s shape, or [heads, *n.shape] for a scheme with per-head parameters."""
        if self.heads is None:
            return self(n)
        return torch.stack([h(n) for h in self.head_schemes])

    def to_dict(self) -> dict[str, Any]:
        out = {"scheme": self.name}
        out.update({f.name: getattr(self, f.name) for f in self.params()})
        return out

    @property
    def _lnL(self) -> float:
        return math.log(self.train_len)


@register
@dataclass(frozen=True)
class NoScaling(Scheme):
    name: ClassVar[str] = "none"
    formula: ClassVar[str] = "1"
    origin: ClassVar[str] = "baseline: the unmodified model"
    uses_train_len: ClassVar[bool] = False
    identity: ClassVar[bool] = True

    def __call__(self, n: torch.Tensor) -> torch.Tensor:
        return torch.ones_like(n)


@register
@dataclass(frozen=True)
class LogN(Scheme):
    name: ClassVar[str] = "logn"
    formula: ClassVar[str] = "max(1, ln n / ln L)"
    origin: ClassVar[str] = "Qwen-7B use_logn_attn (same rule, bit for bit)"

    def __call__(self, n: torch.Tensor) -> torch.Tensor:
        # Qwen: math.log(i, L) if i > L else 1. At n == L the ratio is exactly 1.0 either way.
        return torch.where(n > self.train_len, torch.log(n) / self._lnL, torch.ones_like(n))


@register
@dataclass(frozen=True)
class Critical(Scheme):
    name: ClassVar[str] = "critical"
    formula: ClassVar[str] = "max(1, 1 + τ·(ln n − ln L)/ln L)"
    origin: ClassVar[str] = "Chen et al. 2025, β_n = γ log n continued from the model's level at L; τ=1 is logn"

    tau: float = _param(1.0, "τ, slope in log n relative to the critical one (1 = critical)", minimum=0, maximum=100)

    def __call__(self, n: torch.Tensor) -> torch.Tensor:
        s = 1.0 + self.tau * (torch.log(n) - self._lnL) / self._lnL
        return torch.clamp(s, min=1.0)


@register
@dataclass(frozen=True)
class SSMax(Critical):
    """SSMax below L; beyond it the critical line, whose τ = 1 is SSMax's own slope."""

    name: ClassVar[str] = "ssmax"
    formula: ClassVar[str] = "ln n / ln L  (no clip: < 1 below L); beyond L: 1 + τ·(ln n − ln L)/ln L"
    origin: ClassVar[str] = "Scalable-Softmax (Nakanishi 2025) with s = 1/ln L; τ varies the slope beyond L only"

    def __call__(self, n: torch.Tensor) -> torch.Tensor:
        s = torch.log(n) / self._lnL
        if self.tau == 1.0:  # SSMax itself, to the last bit
            return s
        return torch.where(n > self.train_len, super().__call__(n), s)


@register
@dataclass(frozen=True)
class Llama4(Scheme):
    name: ClassVar[str] = "llama4"
    formula: ClassVar[str] = "1 + a·ln(⌊n / F⌋ + 1)"
    origin: ClassVar[str] = "Llama 4 attn_temperature_tuning (upstream: NoPE layers only, cache indices)"
    uses_train_len: ClassVar[bool] = False

    a: float = _param(0.1, "a, attn_scale", minimum=0, maximum=100)
    F: int = _param(8192, "F, floor_scale", minimum=1, maximum=MAX_TRAIN_LEN, integer=True)

    def __call__(self, n: torch.Tensor) -> torch.Tensor:
        return 1.0 + self.a * torch.log1p(torch.floor(n / self.F))


@register
@dataclass(frozen=True)
class YarnTemperature(Scheme):
    name: ClassVar[str] = "yarn-temp"
    formula: ClassVar[str] = "(0.1·ln f + 1)²  (constant)"
    origin: ClassVar[str] = "YaRN's temperature alone (√(1/t) = 0.1 ln f + 1), without its frequency change"
    uses_train_len: ClassVar[bool] = False

    f: float | None = _param(None, "f, the context extension factor", minimum=1, maximum=1e6, required=True)

    def __call__(self, n: torch.Tensor) -> torch.Tensor:
        return torch.full_like(n, (0.1 * math.log(self.f) + 1.0) ** 2)


@register
@dataclass(frozen=True)
class Power(Scheme):
    name: ClassVar[str] = "power"
    formula: ClassVar[str] = "max(1, ln n / ln L)^p"
    origin: ClassVar[str] = (
        "interpolates none (p=0), logn (p=1) and YaRN-like (log n)² growth (p=2); p < 0 lets s fall below 1 "
        "beyond L (slope p at L, like critical:tau=p, and s > 0 for every n)"
    )

    p: float = _param(2.0, "p, the exponent (< 0: softer logits beyond L)", minimum=-4, maximum=10)

    def __call__(self, n: torch.Tensor) -> torch.Tensor:
        return torch.clamp(torch.log(n) / self._lnL, min=1.0) ** self.p


@dataclass(frozen=True)
class CustomScheme(Scheme):
    """A user callable ``n -> s(n)`` (Python API only; recipes can name built-in schemes only)."""

    name: ClassVar[str] = "custom"
    formula: ClassVar[str] = "user callable"
    origin: ClassVar[str] = "Python API"
    uses_train_len: ClassVar[bool] = False

    fn: Callable[[torch.Tensor], torch.Tensor] | None = None

    def __post_init__(self) -> None:  # a callable has no declared ranges: its values are checked where used
        pass

    def __call__(self, n: torch.Tensor) -> torch.Tensor:
        s = self.fn(n)
        if not isinstance(s, torch.Tensor) or s.shape != n.shape:
            got = tuple(s.shape) if isinstance(s, torch.Tensor) else type(s).__name__
            raise UserError(f"custom scheme must return a tensor shaped like n {tuple(n.shape)}, got {got}")
        # Built-in schemes are finite and positive by construction; a user's callable is checked where it is used
        # (once per forward pass and window), so NaN or a sign flip never reaches the logits silently.
        bad = ~(torch.isfinite(s) & (s > 0))
        if bad.any():
            i = int(bad.flatten().nonzero()[0])
            raise UserError(
                f"custom scheme gave s(n) = {s.flatten()[i].item()} at n = {n.flatten()[i].item():g}; "
                "scales must be finite and > 0"
            )
        return s.to(n.dtype)

    def to_dict(self) -> dict[str, Any]:
        return {"scheme": "custom", "callable": getattr(self.fn, "__qualname__", repr(self.fn))}


def get_scheme(name: str) -> type[Scheme]:
    """The scheme class registered under ``name``; unknown names get the closest matches and the full list."""
    try:
        return SCHEMES[name]
    except KeyError:
        hint = checks.did_you_mean(name, SCHEMES)
        raise UserError(f"unknown scheme {name!r}.{hint} Known schemes: {', '.join(SCHEMES)}") from None
