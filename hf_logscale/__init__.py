"""hf-logscale: length-dependent attention scaling β_n for Hugging Face Llama, Mistral, Qwen and SmolLM3 models.

>>> import hf_logscale as hls
>>> hls.patch(model, hls.LogScaleConfig("logn", train_len=4096))

The names below load on first use, so importing the package (and ``hf-logscale --help``) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__

if TYPE_CHECKING:
    from .config import LogScaleConfig, scale_factors
    from .models import load, save_patched
    from .patching import is_patched, patch, patch_state, patched, unpatch
    from .patching.audit import describe, verify
    from .rope import RopeSetting
    from .schemes import SCHEMES, Scheme
    from .variants import Variant, load_recipe, parse_variant, recipe_names

_EXPORTS = {
    "LogScaleConfig": "config",
    "scale_factors": "config",
    "load": "models",
    "save_patched": "models",
    "is_patched": "patching",
    "patch": "patching",
    "patch_state": "patching",
    "patched": "patching",
    "unpatch": "patching",
    "describe": "patching.audit",
    "verify": "patching.audit",
    "RopeSetting": "rope",
    "SCHEMES": "schemes",
    "Scheme": "schemes",
    "Variant": "variants",
    "load_recipe": "variants",
    "parse_variant": "variants",
    "recipe_names": "variants",
}
__all__ = [
    "LogScaleConfig",
    "RopeSetting",
    "SCHEMES",
    "Scheme",
    "Variant",
    "describe",
    "is_patched",
    "load",
    "load_recipe",
    "parse_variant",
    "patch",
    "patch_state",
    "patched",
    "recipe_names",
    "save_patched",
    "scale_factors",
    "unpatch",
    "verify",
    "__version__",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'hf_logscale' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
