"""The attention-function wrapper: multiply the query by s(n) and delegate to the original backend.

One wrapper per backend is registered through transformers' public ``AttentionInterface`` as
``logscale_<backend>``, together with the backend's own mask function (without it transformers silently builds
no mask). The wrapper itself holds no settings: each patched attention module carries a ``LayerScale`` that
points at its model's ``ScaleState``, so two models in one process never share a scheme, and modules without one
(unselected layers) run unchanged.

Flash backends (``flash_attention_2/3/4`` and kernels-hub implementations such as
``kernels-community/flash-attn3``) look their kernel up by ``module.config._attn_implementation``; the wrapper
hands them a view of the module whose config reports the base name, so the kernel is found as if unpatched.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from typing import Any

import torch
from transformers import AttentionInterface
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

from ..errors import UserError
from ..schemes import Scheme

__all__ = ["ScaleState", "LayerScale", "LAYER_ATTR", "backend_name", "register_backend", "is_flash"]

LAYER_ATTR = "_hf_logscale_layer"
PREFIX = "logscale_"


class ScaleState:
    """Per-model scaling state shared by its patched layers.

    Scales depend only on ``position_ids``, the layer's scheme and its window, so they are computed once per
    forward, scheme and window (the same ``position_ids`` tensor reaches every layer) and reused by the other layers.
    """

    def __init__(self):
        self._cache: dict[Any, tuple[torch.Tensor, int, torch.Tensor]] = {}
        self.probe: dict[int, torch.Tensor] | None = None  # layer -> scales seen, only while verifying
        # diagnostics: called as observer(layer_idx, module, scaled query, key, kwargs) inside the wrapper
        self.observer: Callable[..., None] | None = None

    def scales(
        self,
        scheme: Scheme,
        position_ids: torch.Tensor | None,
        window: int | None,
        q_len: int,
        kv_len: int,
        device: torch.device,
        dtype: torch.dtype,
    ) -> torch.Tensor:
        """s(n) as ``[B or 1, 1, Tq, 1]`` (``[B or 1, H, Tq, 1]`` with per-head parameters), ready to broadcast
        over heads and head_dim, in ``dtype``; n = position + 1 clipped to the window."""
        if position_ids is None:
            # Callers always pass position_ids through the decoder layers; without them assume no padding.
            position_ids = torch.arange(kv_len - q_len, kv_len, device=device)[None]
        key = (scheme, window, dtype, device)  # by value: every layer has its own equal scheme object
        hit = self._cache.get(key)
        version = _version(position_ids)
        if hit is not None and hit[0] is position_ids and hit[1] == version:
            return hit[2]
        if position_ids.ndim != 2 or position_ids.shape[-1] != q_len:
            raise UserError(
                f"hf-logscale expects position_ids shaped [batch, {q_len}], got {tuple(position_ids.shape)} "
                "(multi-axis rope positions are not supported)"
            )
        # float64 for the formula (MPS has none): rounding once to float32 keeps Qwen's table bit for bit.
        exact = torch.float32 if device.type == "mps" else torch.float64
        n = position_ids.to(device=device, dtype=exact) + 1.0
        if window is not None:
            n = n.clamp(max=float(window))
        values = scheme.values(n)  # [B, T], or [H, B, T] with per-head parameters
        s = (values.to(dtype)[:, None] if scheme.heads is None else values.to(dtype).transpose(0, 1))[..., None]
        self._cache[key] = (position_ids, version, s)
        return s


def _version(t: torch.Tensor) -> int:
    """In-place edit counter; inference-mode tensors have none (they are only edited inside the same forward)."""
    return -1 if t.is_inference() else t._version


class LayerScale:
    """Attached to one attention module: applies its scheme (the model's, or this layer's own parameters) through
    the model's ``ScaleState``. ``window`` is the layer's sliding window as its mask applies it (some families do
    not pass it to the function)."""

    def __init__(self, state: ScaleState, layer_idx: int, window: int | None, scheme: Scheme):
        self.state = state
        self.layer_idx = layer_idx
        self.window = window
        self.scheme = scheme

    def __call__(self, query: torch.Tensor, position_ids: torch.Tensor | None, kv_len: int) -> torch.Tensor:
        # query [B, H, Tq, D]; multiply in float32 (float64 for float64 models), cast back once.
        dtype = torch.float64 if query.dtype == torch.float64 else torch.float32
        if self.scheme.identity and self.state.probe is None:
            return query
        s = self.state.scales(self.scheme, position_ids, self.window, query.shape[-2], kv_len, query.device, dtype)
        if self.state.probe is not None:
            self.state.probe[self.layer_idx] = s.detach().to("cpu", torch.float64).flatten()
        if self.scheme.identity:
            return query
        if query.dtype == dtype:
            return query * s
        return (query.to(dtype) * s).to(query.dtype)


_EAGER: dict[type, Callable] = {}


def _eager_for(module: torch.nn.Module) -> Callable:
    """``eager`` is not in the registry: each modeling file has its own ``eager_attention_forward``."""
    cls = type(module)
    fn = _EAGER.get(cls)
    if fn is None:
        fn = _EAGER[cls] = sys.modules[cls.__module__].eager_attention_forward
    return fn


class _BaseNamed:
    """A read-through view of an attention module whose ``config._attn_implementation`` is the base backend's
    name: transformers' flash path loads its kernel by that name, which the patch renamed."""

    __slots__ = ("_module", "config")

    def __init__(self, module: torch.nn.Module, base: str):
        self._module = module
        self.config = _ConfigNamed(module.config, base)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._module, name)


class _ConfigNamed:
    __slots__ = ("_config", "_attn_implementation")

    def __init__(self, config: Any, base: str):
        self._config = config
        self._attn_implementation = base

    def __getattr__(self, name: str) -> Any:
        return getattr(self._config, name)


def is_flash(impl: str) -> bool:
    """transformers treats every implementation whose name contains "flash" as a flash-attention kernel."""
    return "flash" in impl


def _make_wrapper(base: str) -> Callable:
    flash = is_flash(base)

    def logscale_attention(module, query, key, value, attention_mask, *args, **kwargs):
        layer = getattr(module, LAYER_ATTR, None)
        if layer is not None:
            query = layer(query, kwargs.get("position_ids"), key.shape[-2])
            if layer.state.observer is not None:
                layer.state.observer(layer.layer_idx, module, query, key, kwargs)
        if base == "eager":
            return _eager_for(module)(module, query, key, value, attention_mask, *args, **kwargs)
        # looked up at every call: a kernel re-registered under the base name (kernels hub) is used as is
        inner = ALL_ATTENTION_FUNCTIONS[base]
        return inner(_BaseNamed(module, base) if flash else module, query, key, value, attention_mask, *args, **kwargs)

    logscale_attention.__name__ = backend_name(base)
    return logscale_attention


def backend_name(base: str) -> str:
    """``logscale_<base>``; a kernels-hub name (``org/repo@rev:fn``) loses the characters transformers reads as
    a hub reference."""
    return PREFIX + re.sub(r"[/@:|]", "--", base)


def register_backend(base: str) -> str:
    """Register ``logscale_<base>`` (attention + mask function) once per process; return its name."""
    if base.startswith(PREFIX):
        raise UserError(f"attention implementation {base!r} is already a logscale wrapper")
    if base not in ALL_MASK_ATTENTION_FUNCTIONS or (base != "eager" and base not in ALL_ATTENTION_FUNCTIONS):
        known = sorted(set(ALL_MASK_ATTENTION_FUNCTIONS.keys()))
        raise UserError(
            f"attention implementation {base!r} is not supported by hf-logscale; load the model with one of "
            f"{', '.join(known)} (attn_implementation=...)"
        )
    name = backend_name(base)
    if name not in ALL_ATTENTION_FUNCTIONS:
        AttentionInterface.register(name, _make_wrapper(base))
        AttentionMaskInterface.register(name, ALL_MASK_ATTENTION_FUNCTIONS[base])
    return name
