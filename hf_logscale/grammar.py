"""The text forms of settings: ``key=value`` lists as the variant grammar, ``--param`` and lm-eval's model args
write them. One parser and one formatter for all of them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .errors import UserError

__all__ = ["ROPE_KIND_NAMES", "format_params", "format_value", "parse_items", "parse_value"]

# The first word of a variant part names a RoPE kind or a scheme; these names belong to RoPE kinds (rope.py defines
# each), so no scheme may take one.
ROPE_KIND_NAMES = ("yarn", "dynamic", "linear", "llama3", "longrope")


def parse_value(text: str, where: str) -> int | float | bool | list:
    """``true``/``false``, an integer, a float, or a list of numbers ``[a b c]``; anything else raises with
    ``where`` (the field) in the message."""
    t = text.strip()
    if t.startswith("[") and t.endswith("]"):
        items = [parse_value(x, where) for x in t[1:-1].split()]
        if not items or any(isinstance(x, (bool, list)) for x in items):
            raise UserError(f"{where}: {text!r} is not a list of numbers such as [1.5 2 0.75]")
        return items
    if t.lower() in ("true", "false"):
        return t.lower() == "true"
    try:
        return int(t)
    except ValueError:
        pass
    try:
        return float(t)
    except ValueError:
        raise UserError(f"{where}: value {text!r} is not a number or true/false") from None


def parse_items(items: list[str], where: str, *, strings: bool = False) -> dict[str, Any]:
    """``["k=v", ...]`` → ``{k: value}``. Values are numbers or booleans; with ``strings`` any other text is kept
    as a string (lm-eval's model args take names and paths)."""
    out: dict[str, Any] = {}
    for item in items:
        key, eq, val = item.partition("=")
        if not eq or not key.strip():
            raise UserError(f"{where}: expected key=value, got {item.strip()!r}")
        try:
            out[key.strip()] = parse_value(val, f"{where} {key.strip()}")
        except ValueError:
            if not strings:
                raise
            out[key.strip()] = val.strip()
    return out


def format_params(params: Mapping[str, Any]) -> str:
    """``{k: v}`` → ``k=v,k=v`` in the grammar ``parse_items`` reads (lists as ``[a b c]``)."""
    return ",".join(f"{k}={format_value(v)}" for k, v in params.items())


def format_value(v: Any) -> str:
    """One value as the grammar writes it (``parse_value`` reads it back)."""
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, (list, tuple)):
        return "[" + " ".join(map(format_value, v)) + "]"
    return repr(float(v)) if isinstance(v, float) else str(v)  # numpy floats are floats: written as plain floats
