"""hf-logscale: length-dependent attention scaling β_n for Hugging Face Llama / Qwen2 / Qwen3 / Mistral models.

>>> import hf_logscale as hls
>>> hls.patch(model, hls.LogScaleConfig(scheme="logn", train_len=4096))
"""

__version__ = "0.1.0"

from .config import LogScaleConfig, scale_factors  # noqa: E402
from .models import load, save_patched  # noqa: E402
from .patching import is_patched, patch, patch_state, patched, unpatch  # noqa: E402
from .patching.report import describe, verify  # noqa: E402
from .rope import RopeSetting  # noqa: E402
from .schemes import SCHEMES, Scheme  # noqa: E402
from .variants import Variant, load_recipe, parse_variant, recipe_names  # noqa: E402

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
