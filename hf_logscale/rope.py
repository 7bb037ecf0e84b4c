"""RoPE-scaling baselines through transformers' own rope parameters.

A ``RopeSetting`` names one of transformers' rope types (yarn, dynamic, linear, llama3, longrope) with its
parameters. Applying it *merges* them into the model config's existing rope parameters (``rope_parameters`` in
transformers 5.x, ``rope_scaling`` + ``rope_theta`` in 4.x), so ``rope_theta`` is kept, and rebuilds only the
rotary-embedding modules. The returned ``RopeState`` restores the exact original objects.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import transformers

from . import checks
from .errors import UserError
from .grammar import ROPE_KIND_NAMES, format_params

__all__ = [
    "RopeSetting",
    "ROPE_KINDS",
    "RopeState",
    "apply_rope",
    "adopt_rope",
    "restore_rope",
    "rope_config_update",
    "rope_params",
    "global_rope",
    "attention_factor",
]

_V5 = int(transformers.__version__.split(".")[0]) >= 5

# kind -> {parameter: (type, required, range check, range text)}
_pos = (lambda v: v > 0, "> 0")
_ge1 = (lambda v: v >= 1, "≥ 1")
_any = (lambda v: True, "any value")
ROPE_KINDS: dict[str, dict[str, tuple[type, bool, Any, str]]] = {
    "yarn": {
        "factor": (float, True, *_ge1),
        "original_max_position_embeddings": (int, False, *_ge1),
        "attention_factor": (float, False, *_pos),
        "beta_fast": (float, False, *_pos),
        "beta_slow": (float, False, *_pos),
        "mscale": (float, False, *_pos),
        "mscale_all_dim": (float, False, *_pos),
        "truncate": (bool, False, *_any),
    },
    "dynamic": {"factor": (float, True, *_ge1)},
    "linear": {"factor": (float, True, *_ge1)},
    "llama3": {
        "factor": (float, True, *_ge1),
        "low_freq_factor": (float, False, *_pos),
        "high_freq_factor": (float, False, *_pos),
        "original_max_position_embeddings": (int, False, *_ge1),
    },
    "longrope": {
        "short_factor": (list, True, *_any),
        "long_factor": (list, True, *_any),
        "factor": (float, True, *_ge1),
        "original_max_position_embeddings": (int, False, *_ge1),
        "attention_factor": (float, False, *_pos),
    },
}
assert tuple(ROPE_KINDS) == ROPE_KIND_NAMES, "spec.ROPE_KIND_NAMES must list the RoPE kinds defined here"
_DEFAULTS = {"llama3": {"low_freq_factor": 1.0, "high_freq_factor": 4.0}}
# Kinds whose transformers implementation reads the original length from `original_max_position_embeddings`;
# for them max_position_embeddings becomes factor × original (as in released YaRN/Llama 3 configs).
_EXTENDS_MAX_POS = {"yarn", "llama3", "longrope"}


@dataclass(frozen=True)
class RopeSetting:
    """One transformers rope type and its parameters, e.g. ``RopeSetting("yarn", {"factor": 4.0})``."""

    kind: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.kind, str) or self.kind not in ROPE_KINDS:
            hint = checks.did_you_mean(self.kind, ROPE_KINDS)
            raise UserError(f"unknown RoPE kind {self.kind!r}.{hint} Known: {', '.join(ROPE_KINDS)}")
        if not isinstance(self.params, Mapping):
            raise UserError(f"{self.kind}: `params` must be a mapping, got {self.params!r}")
        spec = ROPE_KINDS[self.kind]
        clean: dict[str, Any] = {}
        for key, value in self.params.items():
            if key not in spec:
                hint = checks.did_you_mean(key, spec)
                raise UserError(f"{self.kind}: unknown parameter {key!r}.{hint} Accepted: {', '.join(spec)}")
            typ, _, check, text = spec[key]
            clean[key] = _coerce(self.kind, key, value, typ)
            if typ is not list and not check(clean[key]):
                raise UserError(f"{self.kind}: `{key}` must be {text}, got {value!r}")
        missing = [k for k, (_, req, _, _) in spec.items() if req and k not in clean]
        if missing:
            raise UserError(
                f"{self.kind}: missing required parameter(s) {', '.join(missing)} (e.g. {self.kind}:factor=4)"
            )
        object.__setattr__(self, "params", dict(sorted(clean.items())))

    @property
    def text(self) -> str:
        return self.kind + (":" + format_params(self.params) if self.params else "")

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "params": dict(self.params)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RopeSetting:
        """The inverse of ``to_dict``, checked (saved files can be edited by hand)."""
        if not isinstance(data, Mapping) or not isinstance(data.get("kind"), str):
            raise UserError(f"a RoPE setting must be a table with `kind` and `params`, got {data!r}")
        params = data.get("params") or {}
        if not isinstance(params, Mapping):
            raise UserError(f"RoPE `params` must be a table, got {params!r}")
        return cls(data["kind"], params)

    def config_params(self, train_len: int) -> dict[str, Any]:
        """The entries merged into the model's rope parameters."""
        out: dict[str, Any] = {"rope_type": self.kind, **_DEFAULTS.get(self.kind, {}), **self.params}
        if "original_max_position_embeddings" in ROPE_KINDS[self.kind]:
            out.setdefault("original_max_position_embeddings", int(train_len))
        return out


def _coerce(kind: str, key: str, value: Any, typ: type) -> Any:
    if typ is bool:
        if isinstance(value, bool):
            return value
        raise UserError(f"{kind}: `{key}` must be true or false, got {value!r}")
    if typ is list:
        if isinstance(value, (list, tuple)) and all(isinstance(x, (int, float)) for x in value):
            return [float(x) for x in value]
        raise UserError(f"{kind}: `{key}` must be a list of numbers such as [1 1.5 2], got {value!r}")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise UserError(f"{kind}: `{key}` must be a number, got {value!r}")
    if typ is int:
        if float(value) != int(value):
            raise UserError(f"{kind}: `{key}` must be an integer, got {value!r}")
        return int(value)
    return float(value)


_RAW_KEY = "rope_parameters" if _V5 else "rope_scaling"
_MISSING = object()


def _raw(config: Any) -> Any:
    """The config attribute RoPE settings live in, deep-copied (5.x ``rope_parameters``, 4.x ``rope_scaling``)."""
    return copy.deepcopy(getattr(config, _RAW_KEY, None))


def rope_params(config: Any) -> dict[str, Any] | None:
    """The config's rope parameters as one dict, ``rope_theta`` included, for reading and reporting. A config
    with one dict per layer type (Gemma 3, OLMo 3) gives its global layers' (see ``global_rope``)."""
    raw = _raw(config)
    if _V5:
        return global_rope(raw) if raw else None
    raw = raw or {}
    out = {"rope_theta": getattr(config, "rope_theta", None), **raw}
    out["rope_type"] = raw.get("rope_type") or raw.get("type") or "default"  # Phi-3 configs say "type"
    if out["rope_type"] == "longrope" and "original_max_position_embeddings" in vars(config):  # Phi-3, as 5.x
        out.setdefault("original_max_position_embeddings", config.original_max_position_embeddings)
    return out


def _per_layer_type(raw: Any) -> bool:
    return bool(raw) and all(isinstance(v, Mapping) for v in raw.values())


def global_rope(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The rope parameters of the layers that see the whole context. Per layer type, sliding-window layers keep a
    local RoPE of their own (Gemma 3: ``rope_local_base_freq``) and never see a distance beyond their window; the
    global layers' entry is the one whose frequencies, scaling and length matter at long context."""
    if not _per_layer_type(raw):
        return dict(raw)
    wide = [k for k in raw if k != "sliding_attention"]
    return dict(raw[wide[0] if wide else next(iter(raw))])


_KEEP_ACROSS_KINDS = ("rope_theta", "partial_rotary_factor")


def _merge_one(base: Mapping[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    # Same kind: override its parameters. Another kind: keep only what every kind shares, so a base YaRN's
    # attention_factor or a Llama 3 factor cannot leak into the new setting. The legacy "type" key always goes
    # (4.x configs copy it over rope_type on reload).
    base_kind = base.get("rope_type", base.get("type", "default"))
    kept = (
        {k: v for k, v in base.items() if k != "type"}
        if base_kind == update["rope_type"]
        else {k: base[k] for k in _KEEP_ACROSS_KINDS if k in base}
    )
    return {**kept, **update}


def _merge(base: Any, update: dict[str, Any]) -> dict[str, Any]:
    """Merge into a flat dict, or, with one dict per layer type (5.x ``layer_types``), into the global layers'
    only: sliding-window layers keep their local RoPE, as the published long-context configs do (Gemma 3's
    linear ×8 and OLMo 3's YaRN reach the global layers alone)."""
    base = copy.deepcopy(base) or {}
    if _per_layer_type(base):
        if set(base) == {"sliding_attention"}:
            raise UserError("every layer slides: a RoPE setting would reach no layer that sees the whole context")
        return {k: v if k == "sliding_attention" else _merge_one(v, update) for k, v in base.items()}
    return _merge_one(base, update)


@dataclass
class RopeState:
    """What ``apply_rope`` changed, so ``restore_rope`` can put the exact originals back."""

    setting: RopeSetting
    base_raw: Any  # the config's own rope attribute before the change (or _MISSING), restored as is
    base_max_position_embeddings: int | None
    # LongRoPE reads a top-level original_max_position_embeddings (4.x, Phi-3); _MISSING if it had none
    base_top_original: Any = None
    # (parent module, attribute name, original rotary module); None when the model was loaded already rotated
    modules: list[tuple[torch.nn.Module, str, torch.nn.Module]] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.setting.to_dict(),
            "base_max_position_embeddings": self.base_max_position_embeddings,
            "base_rope": None if self.base_raw is _MISSING else self.base_raw,
        }


def _rotary_slots(model: torch.nn.Module) -> list[tuple[torch.nn.Module, str, torch.nn.Module]]:
    slots = []
    for parent in model.modules():
        for name, child in parent.named_children():
            if type(child).__name__.endswith("RotaryEmbedding"):
                slots.append((parent, name, child))
    if not slots:
        raise UserError(f"{type(model).__name__}: no rotary embedding module found; RoPE variants need one")
    return slots


@contextlib.contextmanager
def _head_dim_stated(config: Any) -> Iterator[None]:
    """transformers' RoPE init and validation read ``getattr(config, "head_dim", hidden_size // heads)``, which a
    config stating ``head_dim = None`` (Mixtral's) defeats with a TypeError: state the derived value meanwhile."""
    unstated = "head_dim" in vars(config) and config.head_dim is None
    if unstated:
        config.head_dim = config.hidden_size // config.num_attention_heads
    try:
        yield
    finally:
        if unstated:
            config.head_dim = None


def _rebuild(slots: list[tuple[torch.nn.Module, str, torch.nn.Module]], config: Any) -> None:
    with _head_dim_stated(config):
        for parent, name, old in slots:
            cls = type(old)
            kwargs = {"config": config}
            buf = getattr(old, "inv_freq", None)
            device = buf.device if isinstance(buf, torch.Tensor) else None
            if "device" in inspect.signature(cls.__init__).parameters:
                kwargs["device"] = device
            new = cls(**kwargs)
            setattr(parent, name, new.to(device) if device is not None else new)


def rope_config_update(config: Any, setting: RopeSetting, train_len: int) -> dict[str, Any]:
    """The config attributes ``setting`` sets: the rope parameters with the setting merged in (``rope_theta``
    kept), and ``max_position_embeddings`` where transformers reads the original or extended length from it."""
    update = setting.config_params(train_len)
    out: dict[str, Any] = {_RAW_KEY: _merge(getattr(config, _RAW_KEY, None), update)}
    if setting.kind == "dynamic":  # transformers' dynamic NTK takes the original length from max_position_embeddings
        out["max_position_embeddings"] = int(train_len)
    if setting.kind in _EXTENDS_MAX_POS and "factor" in setting.params:
        out["max_position_embeddings"] = int(
            round(setting.params["factor"] * update["original_max_position_embeddings"])
        )
    return out


def apply_rope(model: torch.nn.Module, setting: RopeSetting, train_len: int) -> RopeState:
    """Merge ``setting`` into the model's rope parameters (keeping ``rope_theta``) and rebuild the rotary
    modules. ``train_len`` is the default ``original_max_position_embeddings``."""
    config = model.config.get_text_config()  # an image-text model's language model holds its RoPE
    _check_lists(setting, config)
    state = RopeState(setting, getattr(config, _RAW_KEY, _MISSING), getattr(config, "max_position_embeddings", None))
    state.base_raw = copy.deepcopy(state.base_raw) if state.base_raw is not _MISSING else _MISSING
    slots = _rotary_slots(model)
    try:
        for key, value in rope_config_update(config, setting, train_len).items():
            setattr(config, key, value)
        # LongRoPE reads a top-level original_max_position_embeddings (4.x; Phi-3 in 5.x, whose rope
        # standardisation copies it over the rope parameters' own)
        top_level = not _V5 or "original_max_position_embeddings" in vars(config)
        if top_level and setting.kind == "longrope" and "factor" in setting.params:
            state.base_top_original = getattr(config, "original_max_position_embeddings", _MISSING)
            config.original_max_position_embeddings = setting.config_params(train_len)[
                "original_max_position_embeddings"
            ]
        if _V5 and hasattr(config, "validate_rope"):
            with _head_dim_stated(config):
                config.validate_rope()
        _rebuild(slots, config)
    except Exception as err:
        _put_back(config, state)
        raise UserError(f"transformers rejected the RoPE setting {setting.text!r}: {err}") from err
    state.modules = slots
    return state


def _check_lists(setting: RopeSetting, config: Any) -> None:
    """LongRoPE factor lists must have one entry per rotary frequency; transformers would broadcast silently."""
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    rope = rope_params(config) or {}
    freqs = int(head_dim * (rope.get("partial_rotary_factor") or getattr(config, "partial_rotary_factor", 1.0))) // 2
    for key in ("short_factor", "long_factor"):
        values = setting.params.get(key)
        if values is not None and len(values) != freqs:
            raise UserError(f"{setting.kind}: `{key}` must have {freqs} entries (rotary dim / 2), got {len(values)}")


def adopt_rope(model: torch.nn.Module, setting: RopeSetting, base_raw: Any, base_max_pos: int | None) -> RopeState:
    """State for a model whose saved config already carries the RoPE setting (a ``save_pretrained`` of a patched
    model): nothing to rebuild now; restoring rebuilds the rotary modules from the base parameters."""
    return RopeState(setting, copy.deepcopy(base_raw), base_max_pos, None)


def _put_back(config: Any, state: RopeState) -> None:
    if state.base_raw is _MISSING:
        if _RAW_KEY in vars(config):
            delattr(config, _RAW_KEY)
    else:
        setattr(config, _RAW_KEY, copy.deepcopy(state.base_raw))
    config.max_position_embeddings = state.base_max_position_embeddings
    if state.base_top_original is _MISSING:
        delattr(config, "original_max_position_embeddings")
    elif state.base_top_original is not None:
        config.original_max_position_embeddings = state.base_top_original


def restore_rope(model: torch.nn.Module, state: RopeState) -> None:
    _put_back(model.config.get_text_config(), state)
    if state.modules is None:
        _rebuild(_rotary_slots(model), model.config.get_text_config())
    else:
        for parent, name, original in state.modules:
            current = getattr(parent, name)
            buf = getattr(current, "inv_freq", None)
            setattr(parent, name, original.to(buf.device) if isinstance(buf, torch.Tensor) else original)


def attention_factor(model: torch.nn.Module) -> float:
    """The RoPE attention factor transformers multiplies into cos and sin (logits scale by its square)."""
    factors = []
    for _, _, m in _rotary_slots(model):
        # one factor per layer type on models with per-layer-type RoPE (`full_attention_attention_scaling`); the
        # sliding layers' local RoPE is never scaled
        per_type = [v for k, v in vars(m).items() if k.endswith("_attention_scaling") and not k.startswith("sliding")]
        factors += [float(f) for f in per_type] or [float(getattr(m, "attention_scaling", 1.0))]
    return max(factors, key=lambda f: abs(f - 1.0))
