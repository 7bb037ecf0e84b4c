"""patch / unpatch / patched: install a variant on one model instance, reversibly and loudly."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from .._version import __version__
from ..config import LogScaleConfig
from ..errors import UserError
from ..rope import RopeState, adopt_rope, apply_rope, attention_factor, restore_rope, rope_params
from ..schemes import Scheme
from ..train_length import resolve_train_len
from ..variants import Variant, as_variant
from .attention import LAYER_ATTR, PREFIX, LayerScale, ScaleState, is_flash, register_backend
from .families import attention_layers, family_of, layer_window

__all__ = [
    "applied",
    "applied_label",
    "patch",
    "unpatch",
    "patched",
    "is_patched",
    "patch_state",
    "PatchState",
    "CONFIG_KEY",
]

MODEL_ATTR = "_hf_logscale"
CONFIG_KEY = "logscale"  # the entry in model.config (and config.json after save_pretrained)


@dataclass
class PatchState:
    """Everything a patch changed on a model, and what it resolved (train length and its source)."""

    variant: Variant
    scheme: Scheme  # the scheme with the variant's parameters (layers with their own parameters: layer_schemes)
    train_len: int
    train_len_source: str
    base_impl: str
    impl: str
    layers: list[int]
    rope: RopeState | None
    scale: ScaleState
    previous_entry: Any = None  # a `logscale` config entry present before patching (restored by unpatch)
    native_saved: dict[str, Any] | None = None  # the architecture's own length scale, switched off while patched
    layer_schemes: dict[int, Scheme] = field(default_factory=dict)  # patched layer -> its scheme

    def config_entry(self) -> dict[str, Any]:
        """The ``logscale`` entry written into the model config; ``hf_logscale.load`` re-applies it."""
        variant = replace(self.variant, scale=self.variant.scale.with_train_len(self.train_len))
        data = variant.to_dict()
        data["scale"]["layers"] = self.layers
        return {
            "hf_logscale_version": __version__,
            "native_scale_base": self.native_saved,
            "rope_base": self.rope.to_dict() if self.rope else None,
            "spec": self.variant.label,
            "train_len_source": self.train_len_source,
            "variant": data,
        }


def is_patched(model: torch.nn.Module) -> bool:
    return getattr(model, MODEL_ATTR, None) is not None


def patch_state(model: torch.nn.Module) -> PatchState | None:
    return getattr(model, MODEL_ATTR, None)


def patch(
    model: torch.nn.Module,
    cfg: Variant | LogScaleConfig | str,
    *,
    layers: Sequence[int] | None = None,
    _saved: dict[str, Any] | None = None,
) -> torch.nn.Module:
    """Install ``cfg`` (a ``LogScaleConfig``, a ``Variant`` or a variant string such as ``yarn:factor=4+logn``) on
    ``model`` in place and return it. A model already patched is first restored, so patches never stack.

    ``layers`` narrows the patched attention layers (default: the config's selection, else all).
    ``_saved`` (internal, used by ``load``) carries what a saved patch resolved: ``train_len_source`` and, when
    the saved config already holds the RoPE change, ``rope_base`` and ``base_max_position_embeddings``.
    """
    variant = as_variant(cfg)
    if layers is not None:
        variant = replace(variant, scale=replace(variant.scale, layers=tuple(layers)))
    found = attention_layers(model)  # raises for unsupported architectures
    selected = _select(found, variant.scale.layers)
    stray = sorted(set(variant.scale.layer_params) - {i for i, _ in found})
    if stray:  # a per-layer entry for a layer the model lacks would be ignored without a word
        raise UserError(
            f"per_layer parameters name layer(s) {', '.join(map(str, stray))}, which do not exist; the model has "
            f"{len(found)} attention layers (0–{len(found) - 1})"
        )
    previous = patch_state(model)
    if previous is not None:
        unpatch(model)
        try:
            return _install(model, variant, selected, _saved)
        except Exception:
            patch(model, previous.variant)  # a failed patch leaves the previous one in place
            raise
    return _install(model, variant, selected, _saved)


def _install(
    model: torch.nn.Module, variant: Variant, selected: list, _saved: dict[str, Any] | None
) -> torch.nn.Module:
    family, text = family_of(model), model.config.get_text_config()  # an image-text model: its language model
    previous_entry = getattr(model.config, CONFIG_KEY, None)
    if _saved is None and previous_entry:
        warnings.warn(
            "this model's config carries a `logscale` entry from a saved patched model, but no patch is active; "
            "load it with hf_logscale.load() to restore that patch. Patching over it now.",
            stacklevel=2,
        )

    # L comes from the base config, before any RoPE change rewrites max_position_embeddings.
    if variant.scale.train_len is not None:
        train_len, source = variant.scale.train_len, (_saved or {}).get("train_len_source", "given")
    else:
        resolved = resolve_train_len(model.config)
        train_len, source = resolved.value, resolved.source
    scheme = variant.scale.build(train_len)
    layer_schemes = {idx: variant.scale.build(train_len, layer=idx) for idx, _ in selected}
    heads = getattr(text, "num_attention_heads", None)
    for idx, layer_scheme in layer_schemes.items():
        if layer_scheme.heads not in (None, heads):
            raise UserError(
                f"layer {idx}: the scheme lists {layer_scheme.heads} per-head values; the model has {heads} query heads"
            )

    identity = all(s.identity for s in layer_schemes.values())
    if variant.rope is None and not identity and _saved is None:
        _announce_own_factor(model, text)
    base_impl = model.config._attn_implementation
    if base_impl == "sdpa" and family.soft_capped:
        raise UserError(
            f"{type(model).__name__} under sdpa runs without its attention soft-cap (sdpa cannot cap; transformers "
            "5 refuses it for this family): the model is not the one trained. Load it with "
            "attn_implementation='eager' (--attn eager) or flex_attention"
        )
    impl = register_backend(base_impl)
    rope_state: RopeState | None = None
    adopt = _saved is not None and "rope_base" in _saved
    if variant.rope is not None:
        if adopt:
            rope_state = adopt_rope(model, variant.rope, _saved["rope_base"], _saved["base_max_position_embeddings"])
        else:
            rope_state = apply_rope(model, variant.rope, train_len)
    try:
        _switch_implementation(model, impl)
        if model.config._attn_implementation != impl:
            raise UserError(f"{type(model).__name__} did not accept attn_implementation={impl!r}")
    except Exception:
        if rope_state is not None and not adopt:
            restore_rope(model, rope_state)
        raise

    # The variant's scheme replaces a length scale the architecture applies itself, so the two never stack; the
    # identity scheme leaves the model as shipped.
    native = family.native_scale
    native_saved = native.switch_off(text) if native and not identity else None
    scale = ScaleState()
    for idx, module in selected:
        setattr(module, LAYER_ATTR, LayerScale(scale, idx, layer_window(module), layer_schemes[idx]))
    state = PatchState(
        variant=variant,
        scheme=scheme,
        train_len=train_len,
        train_len_source=source,
        base_impl=base_impl,
        impl=impl,
        layers=[idx for idx, _ in selected],
        rope=rope_state,
        scale=scale,
        previous_entry=None if _saved is not None else previous_entry,
        native_saved=native_saved,
        layer_schemes=layer_schemes,
    )
    setattr(model, MODEL_ATTR, state)
    if not variant.scale.is_custom and not callable(variant.scale.layers):
        setattr(model.config, CONFIG_KEY, state.config_entry())
    elif hasattr(model.config, CONFIG_KEY):
        delattr(model.config, CONFIG_KEY)
    return model


def _announce_own_factor(model: torch.nn.Module, text: Any) -> None:
    """A checkpoint whose RoPE already scales the logits (gpt-oss's YaRN, Phi-3's LongRoPE): s(n) multiplies on
    top of that factor, which stays; say so rather than stack silently."""
    try:
        af = attention_factor(model)
    except UserError:  # no rotary module (NoPE): no factor
        return
    if abs(af - 1.0) > 1e-12:
        kind = (rope_params(text) or {}).get("rope_type", "its")
        warnings.warn(
            f"{type(model).__name__}'s RoPE already multiplies every attention logit by {af**2:.4f} (the {kind} "
            f"attention factor {af:.4f}, the same at every length); s(n) multiplies on top of it, which stays "
            "(describe shows the product)",
            stacklevel=4,
        )


def _switch_implementation(model: torch.nn.Module, name: str) -> None:
    """Point the model at attention implementation ``name``. Flash names are set on the config directly:
    ``set_attn_implementation`` would try to load a flash kernel named after the wrapper (transformers reads
    any name containing "flash" as a kernel to import), and the model already loaded with the base kernel."""
    if is_flash(name) or is_flash(model.config._attn_implementation or ""):
        model.config._attn_implementation = name
    else:
        model.set_attn_implementation(name)


def _select(layers: list[tuple[int, torch.nn.Module]], selection: Any) -> list[tuple[int, torch.nn.Module]]:
    if selection is None:
        return layers
    if callable(selection):
        chosen = [(i, m) for i, m in layers if selection(i)]
        if not chosen:
            raise UserError("the `layers` predicate selected no attention layer; nothing would be patched")
        return chosen
    present = {i for i, _ in layers}
    missing = sorted(set(selection) - present)
    if missing:
        raise UserError(
            f"layer(s) {', '.join(map(str, missing))} do not exist; the model has {len(layers)} attention layers "
            f"(0–{max(present)})"
        )
    return [(i, m) for i, m in layers if i in set(selection)]


def unpatch(model: torch.nn.Module) -> torch.nn.Module:
    """Restore the exact original: attention implementation, rotary modules, rope parameters, config."""
    state = patch_state(model)
    if state is None:
        raise UserError(f"{type(model).__name__} is not patched by hf-logscale; nothing to unpatch")
    for module in model.modules():
        if hasattr(module, LAYER_ATTR):
            delattr(module, LAYER_ATTR)
    _switch_implementation(model, state.base_impl)
    if state.native_saved is not None:
        family_of(model).native_scale.restore(model.config.get_text_config(), state.native_saved)
    if state.rope is not None:
        restore_rope(model, state.rope)
    if hasattr(model.config, CONFIG_KEY):
        delattr(model.config, CONFIG_KEY)
    if state.previous_entry is not None:
        setattr(model.config, CONFIG_KEY, state.previous_entry)
    delattr(model, MODEL_ATTR)
    if model.config._attn_implementation.startswith(PREFIX):
        raise RuntimeError("unpatch failed to restore the attention implementation")
    return model


def applied_label(model: torch.nn.Module, variant: Variant | LogScaleConfig | str) -> str:
    """The label of what ``applied(model, variant)`` runs: ``variant``, or for ``none`` the saved patch (if any)."""
    v = as_variant(variant)
    state = patch_state(model) if v.is_identity else None
    return state.variant.label if state is not None else v.label


@contextlib.contextmanager
def applied(
    model: torch.nn.Module, variant: Variant | LogScaleConfig | str, *, wrapper: bool = False
) -> Iterator[torch.nn.Module]:
    """``variant`` for the block, where ``none`` means the model as loaded (its saved patch, if it has one) in every
    command: evaluation, compare, diagnostics. ``wrapper``: the block needs the attention wrapper (to observe
    queries), so an unpatched model gets the identity scheme, which is bit-identical."""
    v = as_variant(variant)
    if v.is_identity and (is_patched(model) or not wrapper):
        yield model
        return
    with patched(model, v):
        yield model


@contextlib.contextmanager
def patched(model: torch.nn.Module, cfg: Variant | LogScaleConfig | str, **kwargs: Any) -> Iterator[torch.nn.Module]:
    """Patch for the duration of a ``with`` block; on exit (also on error) restore the previous state, including
    a patch that was active before."""
    previous = patch_state(model)
    patch(model, cfg, **kwargs)  # on failure the previous patch stays
    try:
        yield model
    finally:
        unpatch(model)
        if previous is not None:
            patch(model, previous.variant)
