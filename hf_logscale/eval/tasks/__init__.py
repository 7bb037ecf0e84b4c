"""The registered tasks, one module each; importing this package registers them (in this order)."""

from .ppl import Perplexity

from .passkey import Passkey, passkey, passkey_prompts  # isort: skip
from .needle import Haystack, Needle, NeedlePrompt, build_needle, needle  # isort: skip

__all__ = [
    "Haystack",
    "Needle",
    "NeedlePrompt",
    "Passkey",
    "Perplexity",
    "build_needle",
    "needle",
    "passkey",
    "passkey_prompts",
]
