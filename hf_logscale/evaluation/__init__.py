"""Long-context evaluation: tasks (perplexity, passkey, needle) in a registry, each cell a function from (model,
tokenizer, settings) to results; ``run`` drives a grid of cells into the result store."""

from . import tasks as _tasks  # noqa: F401  (imports every task module, which registers its task)
from .perplexity import PerplexityResult, perplexity, perplexity_windows, tokenize_documents
from .retrieval import RetrievalResult
from .run import evaluate, length_parts, parse_depths, parse_lengths, run_eval
from .task import TASKS, CellResult, EvalSpec, Figure, Metric, Setting, Task, get_task, register_task
from .tasks.needle import Haystack, build_needle, needle, needle_prompts
from .tasks.passkey import passkey, passkey_prompts

__all__ = [
    "TASKS",
    "CellResult",
    "EvalSpec",
    "Figure",
    "Haystack",
    "Metric",
    "PerplexityResult",
    "RetrievalResult",
    "Setting",
    "Task",
    "build_needle",
    "evaluate",
    "get_task",
    "length_parts",
    "needle",
    "needle_prompts",
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
