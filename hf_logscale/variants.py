"""Variants: one RoPE setting plus one β_n setting, written ``rope[:k=v,...]+scheme[:k=v,...]`` or a recipe.

Examples: ``none``, ``logn``, ``critical:tau=1.5``, ``yarn:factor=4``, ``yarn:factor=4,attention_factor=1+logn``,
``@qwen-logn`` (a recipe shipped in ``patches/``), ``@./my-recipe.toml`` (a recipe file).

Recipes are TOML data (never code)::

    description = "YaRN ×4 frequencies without its temperature, plus Qwen's logn"
    [rope]
    kind = "yarn"
    factor = 4.0
    attention_factor = 1.0
    [scale]
    scheme = "logn"

A recipe may give some layers their own parameters (``calibrate --per-layer`` writes these)::

    [scale]
    scheme = "critical"
    tau = 1.0
    [scale.per_layer]
    0 = { tau = 0.6 }
    3 = { tau = 1.8 }
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

from . import checks
from .config import LogScaleConfig, parse_layer_params
from .errors import UserError
from .grammar import parse_items
from .rope import ROPE_KINDS, RopeSetting
from .schemes import SCHEMES

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = [
    "Variant",
    "as_variant",
    "load_recipe",
    "parse_variant",
    "recipe_dir",
    "recipe_names",
    "recipe_text",
    "split_variants",
    "variant_from_options",
]


@dataclass(frozen=True)
class Variant:
    """A RoPE setting (``None``: the model's own) and a β_n setting. ``name`` is a recipe label, if any."""

    scale: LogScaleConfig = field(default_factory=LogScaleConfig)
    rope: RopeSetting | None = None
    name: str | None = None

    @property
    def text(self) -> str:
        """Canonical grammar form; round-trips through ``parse_variant``."""
        if self.rope is None:
            return self.scale.text
        scale = self.scale.text
        return self.rope.text if scale == "none" else f"{self.rope.text}+{scale}"

    @property
    def is_identity(self) -> bool:
        """``none``: no RoPE change and no scale; applying it leaves the model as it is."""
        return self.rope is None and self.scale.text == "none"

    @property
    def label(self) -> str:
        return f"@{self.name}" if self.name else self.text

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "rope": self.rope.to_dict() if self.rope else None, "scale": self.scale.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Variant:
        """The inverse of ``to_dict``; every field is checked (saved files can be edited by hand)."""
        if not isinstance(data, dict):
            raise UserError(f"a variant must be a table with `scale` and `rope`, got {data!r}")
        unknown = set(data) - {"name", "rope", "scale"}
        if unknown:
            raise UserError(f"unknown variant field(s): {', '.join(sorted(map(str, unknown)))}")
        rope, name = data.get("rope"), data.get("name")
        if name is not None and not isinstance(name, str):
            raise UserError(f"variant `name` must be text, got {name!r}")
        return cls(
            scale=LogScaleConfig.from_dict(data.get("scale") or {}),
            rope=RopeSetting.from_dict(rope) if rope else None,
            name=name,
        )


# '+' joins parts only where a name follows, so numbers such as 1e+3 stay whole.
_JOIN = re.compile(r"\+(?=\s*[A-Za-z@])")


def _split(part: str) -> tuple[str, dict[str, Any]]:
    name, _, rest = part.strip().partition(":")
    name = name.strip()
    params: dict[str, Any] = {}
    if rest.strip():
        items = rest.split(",")
        per_layer = [i for i in items if i.strip().startswith("per_layer=")]
        params = parse_items([i for i in items if i not in per_layer], name)
        for item in per_layer:  # per-layer parameters: per_layer=0/tau=0.8;1/tau=1.3
            params["per_layer"] = parse_layer_params(item.strip()[len("per_layer=") :])
    return name, params


def _scale_from(name: str, params: dict[str, Any], layers: Any = None) -> LogScaleConfig:
    params = dict(params)
    train_len = params.pop("train_len", None)
    layer_params = params.pop("per_layer", None)
    if train_len is not None and (not isinstance(train_len, int) or isinstance(train_len, bool)):
        raise UserError(f"{name}: `train_len` must be an integer ≥ 2, got {train_len!r}")
    return LogScaleConfig(scheme=name, train_len=train_len, params=params, layers=layers, layer_params=layer_params)


def parse_variant(text: str) -> Variant:
    """Parse ``rope[:k=v,...]+scheme[:k=v,...]``, a scheme or rope alone, or ``@recipe``."""
    if not isinstance(text, str):
        raise UserError(f"a variant is text such as `logn` or `yarn:factor=4+logn`, got {text!r}")
    text = text.strip()
    if not text:
        raise UserError("empty variant; try `none`, `logn`, `yarn:factor=4+logn` or `@qwen-logn`")
    if text.startswith("@"):
        return load_recipe(text[1:])
    parts = [p for p in _JOIN.split(text)]
    if len(parts) > 2:
        raise UserError(f"variant {text!r} has {len(parts)} parts; at most one RoPE part and one scheme part")
    rope: RopeSetting | None = None
    scale: LogScaleConfig | None = None
    for part in parts:
        name, params = _split(part)
        if name in ROPE_KINDS:
            if rope is not None or scale is not None:
                raise UserError(f"variant {text!r}: the RoPE part comes first and only once (rope+scheme)")
            rope = RopeSetting(name, params)
        elif name in SCHEMES:
            if scale is not None:
                raise UserError(f"variant {text!r}: only one scheme part is allowed")
            scale = _scale_from(name, params)
        else:
            hint = checks.did_you_mean(name, [*ROPE_KINDS, *SCHEMES])
            raise UserError(
                f"unknown variant part {name!r}.{hint} RoPE kinds: {', '.join(ROPE_KINDS)}; "
                f"schemes: {', '.join(SCHEMES)}; recipes: {', '.join('@' + r for r in recipe_names())}"
            )
    return Variant(scale=scale or LogScaleConfig(), rope=rope)


_PARAM = re.compile(r"^\s*[A-Za-z_][\w.]*\s*=")


def split_variants(text: str) -> list[str]:
    """Split a comma-separated list of variant specs whose parameters are comma-separated too:
    ``"none,yarn:factor=4,attention_factor=1+logn,@qwen-logn"`` → three specs (a ``k=v`` piece continues the
    previous spec)."""
    out: list[str] = []
    for piece in text.split(","):
        if _PARAM.match(piece) and out:
            out[-1] += "," + piece.strip()
        elif piece.strip():
            out.append(piece.strip())
    if not out:
        raise UserError("--variants is empty")
    return out


def as_variant(obj: Variant | LogScaleConfig | str) -> Variant:
    if isinstance(obj, Variant):
        return obj
    if isinstance(obj, LogScaleConfig):
        return Variant(scale=obj)
    if isinstance(obj, str):
        return parse_variant(obj)
    raise UserError(f"expected a Variant, LogScaleConfig or variant text, got {type(obj).__name__} {obj!r}")


# ---- recipes -----------------------------------------------------------------------------------------------


def recipe_dir() -> Path:
    """Recipes ship inside the wheel as ``hf_logscale/patches``; a source checkout uses the top-level folder."""
    packaged = resources.files("hf_logscale") / "patches"
    if packaged.is_dir():
        return Path(str(packaged))
    return Path(__file__).resolve().parent.parent / "patches"


def recipe_names() -> list[str]:
    folder = recipe_dir()
    return sorted(p.stem for p in folder.glob("*.toml")) if folder.is_dir() else []


_RECIPE_KEYS = {"description", "rope", "scale"}
_SCALE_KEYS = {"scheme", "train_len", "layers", "per_layer"}


def load_recipe(name_or_path: str) -> Variant:
    """A recipe by shipped name (``qwen-logn``) or by path to a ``.toml`` file."""
    if not isinstance(name_or_path, str) or not name_or_path.strip():
        raise UserError(f"a recipe is a shipped name or a .toml file, got {name_or_path!r}")
    path = Path(name_or_path)
    if path.is_dir():
        raise UserError(f"recipe {name_or_path!r} is a folder; give a .toml file")
    if path.suffix != ".toml" or not path.exists():
        shipped = recipe_dir() / f"{name_or_path}.toml"
        if not shipped.exists():
            if path.suffix == ".toml":
                raise FileNotFoundError(f"recipe file {name_or_path!r} does not exist")
            raise UserError(f"unknown recipe {name_or_path!r}; shipped recipes: {', '.join(recipe_names())}")
        path = shipped
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: not valid TOML: {err}") from None
    except IsADirectoryError:
        raise UserError(f"recipe {name_or_path!r} is a folder; give a .toml file") from None
    return _recipe_from(data, path)


def recipe_text(
    description: str,
    scale: Mapping[str, Any],
    per_layer: Mapping[int, Mapping[str, Any]] | None = None,
    rope: RopeSetting | None = None,
) -> str:
    """A recipe file (TOML) that ``load_recipe`` reads back: the description, a [rope] table for ``rope``, the
    [scale] table and its per-layer entries (numbers to 4 decimals, per-head values as lists)."""
    lines = [f"description = {json.dumps(description)}", ""]
    if rope is not None:
        lines += ["[rope]", f'kind = "{rope.kind}"', *(f"{k} = {json.dumps(v)}" for k, v in rope.params.items()), ""]
    lines += ["[scale]", *(f"{k} = {_toml_value(v)}" for k, v in scale.items())]
    if per_layer:
        lines += ["", "[scale.per_layer]"]
        lines += [
            f"{i} = {{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in p.items()) + " }"
            for i, p in per_layer.items()
        ]
    return "\n".join(lines) + "\n"


def _toml_value(v: Any) -> str:
    if isinstance(v, str):
        return json.dumps(v)  # a JSON string is a TOML string
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(map(_toml_value, v)) + "]"
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def _recipe_from(data: dict[str, Any], path: Path) -> Variant:
    where = str(path)
    unknown = set(data) - _RECIPE_KEYS
    if unknown:
        raise UserError(
            f"{where}: unknown field(s) {', '.join(sorted(unknown))}; allowed: {', '.join(sorted(_RECIPE_KEYS))}"
        )
    for table in ("scale", "rope"):
        if table in data and not isinstance(data[table], dict):
            raise UserError(f"{where}: `{table}` must be a table ([{table}]), got {data[table]!r}")
    if not data.get("scale") and not data.get("rope"):
        raise UserError(f"{where}: the recipe sets nothing; give a [scale] table (scheme = ...) and/or a [rope] table")
    if "description" in data and not isinstance(data["description"], str):
        raise UserError(f"{where}: `description` must be text, got {data['description']!r}")
    try:
        scale_tbl = dict(data.get("scale") or {})
        scheme = scale_tbl.pop("scheme", "none")
        if not isinstance(scheme, str) or scheme not in SCHEMES:
            raise UserError(f"[scale].scheme: unknown scheme {scheme!r}; known: {', '.join(SCHEMES)}")
        bad = set(scale_tbl) - _SCALE_KEYS - _scheme_params(scheme)
        if bad:
            raise UserError(f"[scale]: unknown field(s) {', '.join(sorted(bad))}")
        layers = scale_tbl.pop("layers", None)
        scale = _scale_from(scheme, scale_tbl, layers=layers)
        rope_tbl = dict(data.get("rope") or {})
        rope = None
        if rope_tbl:
            kind = rope_tbl.pop("kind", None)
            if not isinstance(kind, str):
                raise UserError(f"[rope].kind is required: one of {', '.join(ROPE_KINDS)}, got {kind!r}")
            rope = RopeSetting(kind, rope_tbl)
    except ValueError as err:
        raise UserError(f"{where}: {err}") from None
    return Variant(scale=scale, rope=rope, name=path.stem)


def _scheme_params(name: str) -> set[str]:
    cls = SCHEMES.get(name)
    return {f.name for f in cls.params()} if cls else set()


def variant_from_options(
    *,
    scheme: str | None = None,
    variant: str | None = None,
    recipe: str | None = None,
    train_len: int | None = None,
    tau: float | None = None,
    params: list[str] | None = None,
) -> Variant:
    """The variant of ``hf-logscale patch``: exactly one of a scheme (with ``tau`` and ``k=v`` ``params``), a
    variant spec or a recipe; ``train_len`` overrides L."""
    given = [name for name, v in (("--scheme", scheme), ("--variant", variant), ("--recipe", recipe)) if v]
    if len(given) != 1:
        raise UserError(
            "give exactly one of --scheme, --variant or --recipe" + (f" (got {', '.join(given)})" if given else "")
        )
    if (tau is not None or params) and not scheme:
        raise UserError("--tau and --param go with --scheme; put parameters in the --variant spec instead")
    if scheme:
        kv = parse_items(params or [], "--param")
        if tau is not None:
            kv["tau"] = tau
        return Variant(scale=LogScaleConfig(scheme, train_len=train_len, params=kv))
    v = parse_variant(variant) if variant else load_recipe(recipe)
    return replace(v, scale=v.scale.with_train_len(train_len)) if train_len is not None else v
