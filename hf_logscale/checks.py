"""Checks for values that come from users (Python calls, CLI options, files), in one place and one wording:
``ValueError("`name` must be <what>, got <value>")`` — the field, the accepted range, the value."""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from .errors import UserError

__all__ = ["did_you_mean", "integer", "number", "sequence", "text"]

T = TypeVar("T")


def _fail(name: str, what: str, value: Any) -> ValueError:
    return UserError(f"`{name}` must be {what}, got {value!r}")


def _range(minimum: float | None, maximum: float | None, low_open: bool, high_open: bool) -> str:
    parts = []
    if minimum is not None:
        parts.append(f"{'>' if low_open else '≥'} {_num(minimum)}")
    if maximum is not None:
        parts.append(f"{'<' if high_open else '≤'} {_num(maximum)}")
    return " and ".join(parts)


def _num(v: float) -> str:
    return str(v) if isinstance(v, int) and abs(v) < 10**9 else f"{v:g}"


def integer(name: str, value: Any, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """An int (not a bool; a float only if whole) within [minimum, maximum]."""
    given = value
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    what = "an integer" + (f" {_range(minimum, maximum, False, False)}" if minimum is not None or maximum else "")
    if not isinstance(value, int) or isinstance(value, bool):
        raise _fail(name, what, given)
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise _fail(name, what, given)
    return value


def number(
    name: str,
    value: Any,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """A finite real number (not a bool, not NaN or ±inf) within the bounds (open bounds exclude the end)."""
    bounds = _range(minimum, maximum, low_open, high_open)
    what = "a finite number" + (f" {bounds}" if bounds else "")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _fail(name, what, value)
    v = float(value)
    if minimum is not None and (v < minimum or (low_open and v == minimum)):
        raise _fail(name, what, value)
    if maximum is not None and (v > maximum or (high_open and v == maximum)):
        raise _fail(name, what, value)
    return v


def text(name: str, value: Any) -> str:
    """A non-empty string."""
    if not isinstance(value, str) or not value.strip():
        raise _fail(name, "a non-empty string", value)
    return value


def sequence(name: str, values: Any, item: Callable[[str, Any], T]) -> tuple[T, ...]:
    """A non-empty list or tuple, each element checked by ``item(name, element)``."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise _fail(name, "a non-empty list", values)
    out = tuple(item(name, v) for v in values)
    if not out:
        raise _fail(name, "a non-empty list", values)
    return out


def did_you_mean(name: Any, known: Iterable[str], n: int = 3) -> str:
    """`` Did you mean a, b?`` for the closest of ``known`` to ``name`` (empty when none is close)."""
    close = difflib.get_close_matches(name, list(known), n=n) if isinstance(name, str) else []
    return f" Did you mean {', '.join(close)}?" if close else ""
