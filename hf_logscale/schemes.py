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
import difflib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

__all__ = ["Scheme", "SCHEMES", "get_scheme", "scheme_names", "CustomScheme"]

SCHEMES: dict[str, type[Scheme]] = {}


def register(cls: type[Scheme]) -> type[Scheme]:
    SCHEMES[cls.name] = cls
    return cls


def _param(default: Any, range_text: str, help_text: str) -> Any:
    return field(default=default, metadata={"range": range_text, "help": help_text})


def _check(scheme: str, name: str, ok: bool, range_text: str, value: Any) -> None:
    if not ok:
        raise ValueError(f"{scheme}: `{name}` must be {range_text}, got {value!r}")


@dataclass(frozen=True)
class Scheme(abc.ABC):
    """Base class. Subclasses set ``name``, ``formula``, ``origin`` and implement ``__call__``."""

    name: ClassVar[str]
    formula: ClassVar[str]
    origin: ClassVar[str]
    uses_train_len: ClassVar[bool] = True
    identity: ClassVar[bool] = False  # s ≡ 1: the wrapper may skip the multiply

    train_len: int | None = _param(None, "an integer ≥ 2", "L, the context length the model was trained for")

    def __post_init__(self) -> None:
        if self.uses_train_len:
            L = self.train_len
            ok = isinstance(L, int) and not isinstance(L, bool) and L >= 2
            _check(self.name, "train_len", ok, "an integer ≥ 2", L)

    @classmethod
    def params(cls) -> list[dataclasses.Field]:
        """The scheme's parameters (``train_len`` first when the formula uses L)."""
        fields = [f for f in dataclasses.fields(cls) if f.name != "train_len"]
        return ([f for f in dataclasses.fields(cls) if f.name == "train_len"] if cls.uses_train_len else []) + fields

    @abc.abstractmethod
    def __call__(self, n: torch.Tensor) -> torch.Tensor:
        """Scales for key counts ``n`` (float64 tensor, any shape, values ≥ 1); same shape and dtype."""

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

    tau: float = _param(1.0, "≥ 0", "τ, slope in log n relative to the critical one (1 = critical)")

    def __post_init__(self) -> None:
        super().__post_init__()
        _check(self.name, "tau", _is_real(self.tau) and self.tau >= 0, "≥ 0", self.tau)

    def __call__(self, n: torch.Tensor) -> torch.Tensor:
        s = 1.0 + self.tau * (torch.log(n) - self._lnL) / self._lnL
        return torch.clamp(s, min=1.0)


@register
@dataclass(frozen=True)
class SSMax(Scheme):
    name: ClassVar[str] = "ssmax"
    formula: ClassVar[str] = "ln n / ln L  (no clip: < 1 below L); beyond L: 1 + τ·(ln n − ln L)/ln L"
    origin: ClassVar[str] = "Scalable-Softmax (Nakanishi 2025) with s = 1/ln L; τ varies the slope beyond L only"

    tau: float = _param(1.0, "≥ 0", "τ, the slope beyond L relative to SSMax's own (1 = SSMax)")

    def __post_init__(self) -> None:
        super().__post_init__()
        _check(self.name, "tau", _is_real(self.tau) and self.tau >= 0, "≥ 0", self.tau)

    def __call__(self, n: torch.Tensor) -> torch.Tensor:
        s = torch.log(n) / self._lnL
        if self.tau == 1.0:  # SSMax itself, to the last bit
            return s
        return torch.where(n > self.train_len, 1.0 + self.tau * (torch.log(n) - self._lnL) / self._lnL, s)


@register
@dataclass(frozen=True)
class Llama4(Scheme):
    name: ClassVar[str] = "llama4"
    formula: ClassVar[str] = "1 + a·ln(⌊n / F⌋ + 1)"
    origin: ClassVar[str] = "Llama 4 attn_temperature_tuning (upstream: NoPE layers only, cache indices)"
    uses_train_len: ClassVar[bool] = False

    a: float = _param(0.1, "≥ 0", "a, attn_scale")
    F: int = _param(8192, "an integer ≥ 1", "F, floor_scale")

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.F, float) and self.F.is_integer():  # 8192.0 or 8.192e3 from a spec or recipe
            object.__setattr__(self, "F", int(self.F))
        _check(self.name, "a", _is_real(self.a) and self.a >= 0, "≥ 0", self.a)
        _check(self.name, "F", _is_int(self.F) and self.F >= 1, "an integer ≥ 1", self.F)

    def __call__(self, n: torch.Tensor) -> torch.Tensor:
        return 1.0 + self.a * torch.log1p(torch.floor(n / self.F))


@register
@dataclass(frozen=True)
class YarnTemperature(Scheme):
    name: ClassVar[str] = "yarn-temp"
    formula: ClassVar[str] = "(0.1·ln f + 1)²  (constant)"
    origin: ClassVar[str] = "YaRN's temperature alone (√(1/t) = 0.1 ln f + 1), without its frequency change"
    uses_train_len: ClassVar[bool] = False

    f: float | None = _param(None, "≥ 1 (required)", "f, the context extension factor")

    def __post_init__(self) -> None:
        super().__post_init__()
        _check(self.name, "f", _is_real(self.f) and self.f >= 1, "≥ 1 (required, e.g. yarn-temp:f=4)", self.f)

    def __call__(self, n: torch.Tensor) -> torch.Tensor:
        return torch.full_like(n, (0.1 * math.log(self.f) + 1.0) ** 2)


@register
@dataclass(frozen=True)
class Power(Scheme):
    name: ClassVar[str] = "power"
    formula: ClassVar[str] = "max(1, ln n / ln L)^p"
    origin: ClassVar[str] = "interpolates none (p=0), logn (p=1) and YaRN-like (log n)² growth (p=2)"

    p: float = _param(2.0, "≥ 0", "p, the exponent")

    def __post_init__(self) -> None:
        super().__post_init__()
        _check(self.name, "p", _is_real(self.p) and self.p >= 0, "≥ 0", self.p)

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

    def __call__(self, n: torch.Tensor) -> torch.Tensor:
        s = self.fn(n)
        if not isinstance(s, torch.Tensor) or s.shape != n.shape:
            got = tuple(s.shape) if isinstance(s, torch.Tensor) else type(s).__name__
            raise ValueError(f"custom scheme must return a tensor shaped like n {tuple(n.shape)}, got {got}")
        # Built-in schemes are finite and positive by construction; a user's callable is checked where it is used
        # (once per forward pass and window), so NaN or a sign flip never reaches the logits silently.
        bad = ~(torch.isfinite(s) & (s > 0))
        if bad.any():
            i = int(bad.flatten().nonzero()[0])
            raise ValueError(
                f"custom scheme gave s(n) = {s.flatten()[i].item()} at n = {n.flatten()[i].item():g}; "
                "scales must be finite and > 0"
            )
        return s.to(n.dtype)

    def to_dict(self) -> dict[str, Any]:
        return {"scheme": "custom", "callable": getattr(self.fn, "__qualname__", repr(self.fn))}


def _is_real(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def scheme_names() -> list[str]:
    return list(SCHEMES)


def get_scheme(name: str) -> type[Scheme]:
    """The scheme class registered under ``name``; unknown names get the closest matches and the full list."""
    try:
        return SCHEMES[name]
    except KeyError:
        close = difflib.get_close_matches(name, SCHEMES, n=3)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"unknown scheme {name!r}.{hint} Known schemes: {', '.join(SCHEMES)}") from None
