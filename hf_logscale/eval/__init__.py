"""Long-context evaluators (DESIGN §6): each a function from (model, tokenizer, settings) to results; ``run``
drives a grid of cells into the result store."""

from .needle import Haystack, build_needle, needle
from .passkey import RetrievalResult, passkey, passkey_prompts
from .perplexity import PerplexityResult, perplexity, perplexity_windows, tokenize_documents
from .run import METRICS, TASKS, EvalSpec, evaluate, parse_depths, parse_lengths

__all__ = [
    "METRICS",
    "TASKS",
    "EvalSpec",
    "Haystack",
    "PerplexityResult",
    "RetrievalResult",
    "build_needle",
    "evaluate",
    "needle",
    "parse_depths",
    "parse_lengths",
    "passkey",
    "passkey_prompts",
    "perplexity",
    "perplexity_windows",
    "tokenize_documents",
]
