"""LogScaleConfig: which β_n scheme, with which parameters, on which layers; and where L comes from."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from . import checks
from .errors import UserError
from .grammar import format_params, format_value, parse_value
from .schemes import MAX_TRAIN_LEN, CustomScheme, Scheme, get_scheme

__all__ = ["LogScaleConfig", "format_layer_params", "parse_layer_params", "scale_factors"]


@dataclass(frozen=True, init=False)
class LogScaleConfig:
    """A β_n setting: ``scheme`` (a registered name or a callable ``n -> s(n)``), its parameters (as keywords or
    ``params``), the training length ``train_len`` (``None``: resolved from the model when patching) and an
    optional ``layers`` selection (indices, or a predicate on the layer index).

    >>> LogScaleConfig("critical", train_len=4096, tau=0.5)
    >>> LogScaleConfig("critical", params={"tau": 0.5})  # the same parameters as a mapping
    """

    scheme: str | Callable[[torch.Tensor], torch.Tensor]
    train_len: int | None
    params: Mapping[str, Any]
    layers: tuple[int, ...] | Callable[[int], bool] | None
    layer_params: Mapping[int, Mapping[str, Any]]  # per-layer overrides of the scheme's parameters

    def __init__(
        self,
        scheme: str | Callable[[torch.Tensor], torch.Tensor] = "none",
        train_len: int | None = None,
        params: Mapping[str, Any] | None = None,
        layers: Sequence[int] | Callable[[int], bool] | None = None,
        layer_params: Mapping[int, Mapping[str, Any]] | None = None,
        **scheme_params: Any,
    ) -> None:
        if params is not None and not isinstance(params, Mapping):
            raise UserError(f"`params` must be a mapping of parameter names to values, got {params!r}")
        clash = sorted(set(scheme_params) & set(params or {}))
        if clash:
            raise UserError(f"parameter(s) {', '.join(clash)} given both as keywords and in `params`")
        object.__setattr__(self, "scheme", scheme)
        object.__setattr__(self, "train_len", train_len)
        object.__setattr__(self, "params", {**(params or {}), **scheme_params})
        object.__setattr__(self, "layers", layers)
        object.__setattr__(self, "layer_params", layer_params or {})
        self.__post_init__()

    def __post_init__(self) -> None:
        if not isinstance(self.scheme, str) and not callable(self.scheme):
            raise UserError(
                f"`scheme` must be a scheme name (see `hf-logscale schemes`) or a callable n -> s(n), "
                f"got {type(self.scheme).__name__} {self.scheme!r}"
            )
        if self.train_len is not None:
            checks.integer("train_len", self.train_len, minimum=2, maximum=MAX_TRAIN_LEN)
        if not isinstance(self.params, Mapping):
            raise UserError(f"`params` must be a mapping of parameter names to values, got {self.params!r}")
        if callable(self.scheme) and not isinstance(self.scheme, str):
            if self.params:
                raise UserError("`params` cannot be combined with a callable scheme; close over them instead")
        else:
            cls = get_scheme(self.scheme)
            known = {f.name for f in cls.params()} - {"train_len"}
            for key in self.params:
                if key == "train_len":
                    raise UserError("pass `train_len` as its own argument, not inside `params`")
                if key not in known:
                    accepted = ", ".join(sorted(known)) or "none"
                    hint = checks.did_you_mean(key, known)
                    raise UserError(f"{self.scheme}: unknown parameter {key!r}.{hint} Accepted: {accepted}")
            self._check_layer_params(known)
            # Values checked now against the scheme's declared ranges: errors surface at construction.
            for layer in (None, *self.layer_params):
                cls.check({**self.params, **self.layer_params.get(layer, {}), "train_len": self.train_len})
        object.__setattr__(self, "params", _lists_as_tuples(self.params))
        if self.layers is not None and not callable(self.layers):
            if isinstance(self.layers, (str, bytes)) or not hasattr(self.layers, "__iter__"):
                raise UserError(f"`layers` must be a non-empty list of layer indices ≥ 0, got {self.layers!r}")
            layers = tuple(self.layers)
            bad = [i for i in layers if not isinstance(i, int) or isinstance(i, bool) or i < 0]
            if bad or not layers:
                raise UserError(f"`layers` must be a non-empty list of layer indices ≥ 0, got {list(layers)!r}")
            object.__setattr__(self, "layers", tuple(sorted(set(layers))))

    def _check_layer_params(self, known: set[str]) -> None:
        if not isinstance(self.layer_params, Mapping):
            raise UserError(f"`layer_params` must map layer indices to parameters, got {self.layer_params!r}")
        clean = {}
        for layer, params in self.layer_params.items():
            index = int(layer) if isinstance(layer, str) and layer.isdigit() else layer
            checks.integer("layer_params layer index", index, minimum=0)
            if not isinstance(params, Mapping) or not params:
                raise UserError(f"`layer_params[{index}]` must be a non-empty mapping of parameters, got {params!r}")
            unknown = sorted(set(params) - known)
            if unknown:
                accepted = ", ".join(sorted(known)) or "none"
                raise UserError(
                    f"{self.scheme}: unknown parameter {unknown[0]!r} for layer {index}. Accepted: {accepted}"
                )
            clean[index] = _lists_as_tuples(params)
        object.__setattr__(self, "layer_params", dict(sorted(clean.items())))

    @property
    def is_custom(self) -> bool:
        return not isinstance(self.scheme, str)

    @property
    def scheme_name(self) -> str:
        return "custom" if self.is_custom else self.scheme

    def build(self, train_len: int | None = None, layer: int | None = None) -> Scheme:
        """The scheme object for a concrete ``train_len`` (this config's own ``train_len`` wins), with ``layer``'s
        own parameters when ``layer_params`` has some."""
        L = self.train_len if self.train_len is not None else train_len
        if self.is_custom:
            return CustomScheme(train_len=L, fn=self.scheme)
        cls = get_scheme(self.scheme)
        if cls.uses_train_len and L is None:
            raise UserError(
                f"{self.scheme}: `train_len` (L) is unknown; pass train_len=... or patch a model whose config has "
                "max_position_embeddings"
            )
        params = {**self.params, **self.layer_params.get(layer, {})}
        return cls(train_len=L if cls.uses_train_len else None, **params)

    def with_train_len(self, train_len: int) -> LogScaleConfig:
        return dataclasses.replace(self, train_len=train_len)

    @property
    def text(self) -> str:
        """The variant-grammar form, e.g. ``critical:tau=0.5`` (``train_len`` only when set explicitly)."""
        items = dict(self.params)
        if self.train_len is not None:
            items = {"train_len": self.train_len, **items}
        if self.layer_params:
            items["per_layer"] = format_layer_params(self.layer_params)
        return self.scheme_name + (":" + format_params(items) if items else "")

    def to_dict(self) -> dict[str, Any]:
        if self.is_custom:
            raise UserError(
                "a callable scheme cannot be serialised; register a Scheme subclass (see README) to save or "
                "share this patch"
            )
        layers = list(self.layers) if isinstance(self.layers, tuple) else None
        if callable(self.layers):
            raise UserError("a `layers` predicate cannot be serialised; pass a list of layer indices instead")
        out = {"layers": layers, "params": dict(self.params), "scheme": self.scheme, "train_len": self.train_len}
        if self.layer_params:  # JSON keys are text
            out["layer_params"] = {str(k): dict(v) for k, v in self.layer_params.items()}
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LogScaleConfig:
        """The inverse of ``to_dict``; every field is checked (saved files can be edited by hand)."""
        if not isinstance(data, Mapping):
            raise UserError(f"a scale setting must be a table of scheme, train_len, params, layers; got {data!r}")
        unknown = set(data) - {"layers", "layer_params", "params", "scheme", "train_len"}
        if unknown:
            raise UserError(f"unknown LogScaleConfig field(s): {', '.join(sorted(map(str, unknown)))}")
        scheme = data.get("scheme", "none")
        if not isinstance(scheme, str):
            raise UserError(f"`scheme` must be a scheme name, got {scheme!r}")
        return cls(
            scheme=scheme,
            train_len=data.get("train_len"),
            params=data.get("params") or {},
            layers=data.get("layers"),
            layer_params=data.get("layer_params") or {},
        )


def _lists_as_tuples(params: Mapping[str, Any]) -> dict[str, Any]:
    """Per-head values as tuples, however given (a list from text, TOML or JSON): equal configs compare equal."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in params.items()}


def format_layer_params(layer_params: Mapping[int, Mapping[str, Any]]) -> str:
    """``{0: {"tau": 0.8}, 1: {"tau": 1.3}}`` → ``0/tau=0.8;1/tau=1.3`` (the variant grammar's ``per_layer`` value)."""
    return ";".join(
        f"{layer}/{k}={format_value(v)}" for layer, params in layer_params.items() for k, v in params.items()
    )


def parse_layer_params(text: str) -> dict[int, dict[str, Any]]:
    """The inverse of ``format_layer_params``."""
    out: dict[int, dict[str, Any]] = {}
    for item in text.split(";"):
        layer, slash, kv = item.partition("/")
        key, eq, value = kv.partition("=")
        if not slash or not eq or not layer.strip().isdigit():
            raise UserError(
                f"per_layer: expected layer/param=value items joined by ';' (e.g. 0/tau=0.8;1/tau=1.3), got {item!r}"
            )
        out.setdefault(int(layer), {})[key.strip()] = parse_value(value, f"per_layer {layer}/{key.strip()}")
    return out


def scale_factors(cfg: LogScaleConfig | Scheme, n: torch.Tensor | int | float | list) -> torch.Tensor:
    """s(n) for key counts ``n`` as a float64 tensor (the model multiplies in float32, or float64 for float64
    models). ``cfg`` needs an explicit ``train_len`` when its scheme uses L."""
    scheme = cfg if isinstance(cfg, Scheme) else cfg.build()
    try:
        n = torch.as_tensor(n, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError):
        raise UserError(f"key counts `n` must be numbers ≥ 1, got {n!r}") from None
    if n.numel() == 0 or not torch.isfinite(n).all() or (n < 1).any():
        raise UserError(f"key counts `n` must be finite numbers ≥ 1, got {n.tolist()!r}")
    return scheme.values(n)
