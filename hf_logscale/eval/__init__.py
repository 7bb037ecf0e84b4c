"""Long-context evaluation: tasks (perplexity, passkey, needle) in a registry, each cell a function from (model,
tokenizer, settings) to results; ``run`` drives a grid of cells into the result store."""

from .perplexity import PerplexityResult, perplexity, perplexity_windows, tokenize_documents
from .retrieval import RetrievalResult
from .run import EvalSpec, evaluate, length_parts, parse_depths, parse_lengths, run_eval
from .task import TASKS, CellResult, Figure, Metric, Task, get_task, register_task
from .tasks import Haystack, build_needle, needle, passkey, passkey_prompts

__all__ = [
    "TASKS",
    "CellResult",
    "EvalSpec",
    "Figure",
    "Haystack",
    "Metric",
    "PerplexityResult",
    "RetrievalResult",
    "Task",
    "build_needle",
    "evaluate",
    "get_task",
    "length_parts",
    "needle",
    "parse_depths",
    "parse_lengths",
    "passkey",
    "passkey_prompts",
    "perplexity",
    "perplexity_windows",
    "register_task",
    "run_eval",
    "tokenize_documents",
]
