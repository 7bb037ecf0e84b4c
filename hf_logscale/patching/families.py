"""Per-family facts: which modules are attention layers, which sliding window each one uses, and whether the
architecture already applies a length-dependent scale of its own.

Every family here calls the attention function registered for ``config._attn_implementation`` with the query
after RoPE (and after q/k-norm for Qwen3) and the keys after the cache update. Enabling another family that
follows the same AttentionInterface pattern is one entry in ``FAMILIES`` plus its tests.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import transformers

from ..errors import UserError

__all__ = ["FAMILIES", "Family", "NativeScale", "attention_layers", "family_of", "layer_window"]

_VERSION = tuple(int(x) for x in transformers.__version__.split(".")[:2])


@dataclass(frozen=True)
class NativeScale:
    """A length-dependent query scale the architecture applies itself, before the attention function.

    Ministral 3 multiplies the query by ``1 + β·ln(1 + ⌊pos / L0⌋)`` with β = ``rope_parameters
    ["llama_4_scaling_beta"]`` and L0 = ``rope_parameters["original_max_position_embeddings"]`` (transformers'
    ``get_llama_4_attn_scale``; pos is the 0-based position). A patch with a β_n scheme switches it off
    (β = 0 gives exactly 1) so that the two never stack; unpatch restores β.
    """

    beta_key: str = "llama_4_scaling_beta"
    anchor_key: str = "original_max_position_embeddings"

    def values(self, config: Any, saved: dict[str, Any] | None = None) -> tuple[float, int] | None:
        """(β, L0) as the config states them (``saved``: what ``switch_off`` returned overrides), or None when
        the scale is absent or zero."""
        params = {**(getattr(config, "rope_parameters", None) or {}), **(saved or {})}
        beta, anchor = params.get(self.beta_key), params.get(self.anchor_key)
        return (float(beta), int(anchor)) if beta and anchor else None

    def describe(self, config: Any, saved: dict[str, Any] | None = None) -> str | None:
        v = self.values(config, saved)
        if v is None:
            return None
        return f"1 + {v[0]:g}·ln(1 + ⌊pos / {v[1]}⌋)  (rope_parameters.{self.beta_key})"

    def factor(self, config: Any, n: int) -> float:
        """The native multiplier of a query that sees n keys (position n − 1); 1 when absent."""
        v = self.values(config)
        return 1.0 if v is None else 1.0 + v[0] * math.log1p((n - 1) // v[1])

    def switch_off(self, config: Any) -> dict[str, Any] | None:
        """Set β to 0; returns what ``restore`` needs (None if there was nothing to switch off)."""
        params = getattr(config, "rope_parameters", None)
        if not params or not params.get(self.beta_key):
            return None
        saved = {self.beta_key: params[self.beta_key]}
        params[self.beta_key] = 0.0
        return saved

    def restore(self, config: Any, saved: dict[str, Any]) -> None:
        config.rope_parameters.update(saved)


def _scaling_from_pre_attn_scalar(config: Any) -> str | None:
    value = getattr(config, "query_pre_attn_scalar", None)
    return f"scaling 1/√{value:g} (query_pre_attn_scalar, not 1/√head_dim); s(n) multiplies it" if value else None


def _softcap(config: Any) -> str | None:
    cap = getattr(config, "attn_logit_softcapping", None)
    if not cap:
        return None
    return (
        f"attention logits soft-capped, {cap:g}·tanh(x / {cap:g}); s(n) multiplies x before the cap, so a scaled "
        f"logit still stays within ±{cap:g}"
    )


def _sinks(config: Any) -> str:
    return (
        "a learned sink logit per head joins every row's softmax; s(n) scales the token logits, never the sink "
        "(z → s·z while the sink stays: its share falls where the weighted mean token logit is positive)"
    )


def _attention_multiplier(config: Any) -> str | None:
    value = getattr(config, "attention_multiplier", None)
    return f"scaling = attention_multiplier {value:g} (replaces 1/√head_dim); s(n) multiplies it" if value else None


def _nope_global(config: Any) -> str:
    return "global (full-attention) layers apply no RoPE (NoPE); sliding layers rotate"


@dataclass(frozen=True)
class Family:
    attention: str  # class name of the attention modules
    # first version whose modeling file calls AttentionInterface with position_ids in the keyword arguments
    min_transformers: tuple[int, int] = (4, 57)
    native_scale: NativeScale | None = None
    soft_capped: bool = False  # sdpa cannot soft-cap: transformers 4.x runs Gemma 2 under sdpa without its cap
    # what the architecture itself does to the attention logits around s(n), one line each (None: not in this config)
    logits: tuple[Callable[[Any], str | None], ...] = ()

    def logit_notes(self, config: Any) -> list[str]:
        return [note for note in (f(config) for f in self.logits) if note]


_GEMMA = (_scaling_from_pre_attn_scalar, _softcap)
FAMILIES: dict[str, Family] = {
    "llama": Family("LlamaAttention"),
    "mistral": Family("MistralAttention"),
    "ministral": Family("MinistralAttention"),
    "ministral3": Family("Ministral3Attention", (5, 0), NativeScale()),
    "mixtral": Family("MixtralAttention"),
    "qwen2": Family("Qwen2Attention"),
    "qwen2_moe": Family("Qwen2MoeAttention", (5, 0)),
    "qwen3": Family("Qwen3Attention"),
    "qwen3_moe": Family("Qwen3MoeAttention"),
    "smollm3": Family("SmolLM3Attention"),
    "gemma3_text": Family("Gemma3Attention", logits=_GEMMA),
    "gpt_oss": Family("GptOssAttention", logits=(_sinks,)),
    "gemma2": Family("Gemma2Attention", logits=_GEMMA, soft_capped=True),
    "phi3": Family("Phi3Attention"),
    "cohere2": Family("Cohere2Attention", (5, 0), logits=(_nope_global,)),  # 4.57 passes no position_ids
    "olmo2": Family("Olmo2Attention"),
    "olmo3": Family("Olmo3Attention"),
    "granite": Family("GraniteAttention", logits=(_attention_multiplier,)),
    "glm": Family("GlmAttention"),
    "glm4": Family("Glm4Attention"),
}

# Architectures that cannot be patched, with the reason.
_REFUSED = {
    "llama4": "Llama 4 applies its own length scale (attn_temperature_tuning on its NoPE layers, by cache index, "
    "so wrong under left padding) and chunked attention, which hf-logscale does not model",
}
_REFUSED["llama4_text"] = _REFUSED["llama4"]


def family_of(model: torch.nn.Module) -> Family:
    """The family entry for ``model``; unsupported architectures raise with the supported list."""
    config = getattr(model, "config", None)
    if config is not None and getattr(config, "model_type", None) not in _REFUSED:
        config = config.get_text_config()  # an image-text model (Gemma 3 4B and up): its language model
    model_type = getattr(config, "model_type", None)
    supported = ", ".join(FAMILIES)
    if model_type in _REFUSED:
        raise UserError(f"{model_type} is not supported: {_REFUSED[model_type]}. Supported: {supported}")
    family = FAMILIES.get(model_type)
    if family is None:
        raise UserError(
            f"unsupported architecture {model_type!r} ({type(model).__name__}); hf-logscale supports {supported} "
            "(Llama, Mistral, Ministral, Mixtral, Qwen2/2.5, Qwen2-MoE, Qwen3, Qwen3-MoE, SmolLM3, Gemma 2, Gemma 3, "
            "gpt-oss, Phi-3/Phi-4-mini, Command R7B, OLMo 2/3, Granite, GLM-4 checkpoints)"
        )
    if _VERSION < family.min_transformers:
        need = ".".join(map(str, family.min_transformers))
        raise UserError(
            f"{model_type} calls its attention through AttentionInterface, with position_ids, from transformers "
            f"{need} on; found "
            f"{transformers.__version__}: upgrade with `pip install -U transformers`"
        )
    return family


def attention_layers(model: torch.nn.Module) -> list[tuple[int, torch.nn.Module]]:
    """``(layer_idx, module)`` for every attention layer, in layer order; unsupported models raise."""
    cls_name = family_of(model).attention
    layers = [(int(m.layer_idx), m) for m in model.modules() if type(m).__name__ == cls_name]
    if not layers:
        raise UserError(f"{type(model).__name__}: found no {cls_name} modules to patch")
    return sorted(layers, key=lambda t: t[0])


def layer_window(module: torch.nn.Module) -> int | None:
    """The sliding window W of this attention layer (None: full attention), as its mask applies it.

    Qwen2/Qwen3/SmolLM3/Ministral set ``sliding_window`` per layer; Qwen2-MoE sets it on sliding layers only
    (its config's ``layer_types`` tells the others); Mistral, Mixtral and Ministral 3 slide every layer when the
    config has a window. A window of 0 (Qwen2-MoE's config convention) means none."""
    config = module.config
    if hasattr(module, "sliding_window"):
        window = module.sliding_window
    elif getattr(config, "layer_types", None) is not None:
        sliding = config.layer_types[module.layer_idx] == "sliding_attention"
        window = config.sliding_window if sliding else None
    else:
        window = getattr(config, "sliding_window", None)
    return int(window) if window else None
