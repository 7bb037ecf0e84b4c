"""Per-family facts: which modules are attention layers and which sliding window each one uses.

All four families call the attention function registered for ``config._attn_implementation`` with the query
after RoPE (and after q-norm for Qwen3) and the keys after the cache update (see transformers-internals notes).
Enabling another family that follows the same AttentionInterface pattern is one entry here plus its tests.
"""

from __future__ import annotations

import torch

__all__ = ["FAMILIES", "attention_layers", "layer_window"]

FAMILIES: dict[str, str] = {
    "llama": "LlamaAttention",
    "mistral": "MistralAttention",
    "qwen2": "Qwen2Attention",
    "qwen3": "Qwen3Attention",
}


def attention_layers(model: torch.nn.Module) -> list[tuple[int, torch.nn.Module]]:
    """``(layer_idx, module)`` for every attention layer, in layer order; unsupported models raise."""
    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", None)
    if model_type not in FAMILIES:
        raise ValueError(
            f"unsupported architecture {model_type!r} ({type(model).__name__}); hf-logscale supports "
            f"{', '.join(FAMILIES)} (Llama, Mistral, Qwen2/2.5, Qwen3 checkpoints)"
        )
    cls_name = FAMILIES[model_type]
    layers = [(int(m.layer_idx), m) for m in model.modules() if type(m).__name__ == cls_name]
    if not layers:
        raise ValueError(f"{type(model).__name__}: found no {cls_name} modules to patch")
    return sorted(layers, key=lambda t: t[0])


def layer_window(module: torch.nn.Module) -> int | None:
    """The sliding window this layer passes to the attention function (Qwen: per layer; Mistral: config)."""
    if hasattr(module, "sliding_window"):
        return module.sliding_window
    return getattr(module.config, "sliding_window", None)
