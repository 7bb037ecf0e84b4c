"""``run_diagnose``: attention entropy vs n per layer, token collapse and gradient flow vs length, for several
variants, on windows of held-out text; results as JSON (figures: ``diagnostics.figures``)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from ..errors import UserError
from ..evaluation.perplexity import perplexity_windows, tokenize_documents
from ..patching import applied, applied_label
from ..results import write_atomic
from ..tables import Table
from ..variants import Variant
from .calibrate import band_entropy
from .entropy import attention_entropy
from .figures import plot_collapse, plot_entropy
from .hidden import collapse, gradient_norms

__all__ = ["Diagnosis", "run_diagnose", "token_windows"]


def token_windows(tokenizer: Any, texts: Sequence[str], length: int, count: int) -> list[torch.Tensor]:
    """Up to ``count`` windows [1, length] — the perplexity evaluator's truncate windows: BOS + the first
    length − 1 tokens of a document, one per document long enough."""
    tokens = tokenize_documents(tokenizer, texts)
    windows, _, _ = perplexity_windows(tokens, length, "truncate", bos=tokenizer.bos_token_id, max_documents=count)
    if not windows:
        raise UserError(f"no document has the {length} tokens a window needs")
    return [torch.tensor([w.ids]) for w in windows]


class Diagnosis(dict):
    """{"entropy": {variant: [layers][heads][T]}, "collapse": {variant: {length: {...}}}, "gradients": {...}}"""

    def save(self, path: Path) -> Path:
        write_atomic(path, json.dumps(self, indent=1))
        return path

    def write(self, out_dir: Path, name: str, train_len: int | None) -> list[Path]:
        """diagnostics.json and the two figures into ``out_dir``."""
        out_dir.mkdir(parents=True, exist_ok=True)
        return [
            self.save(out_dir / "diagnostics.json"),
            plot_entropy(self, train_len, out_dir / "entropy_vs_n.png", f"{name}: attention entropy vs keys seen"),
            plot_collapse(self, train_len, out_dir / "collapse.png", f"{name}: token collapse and gradient flow"),
        ]

    def entropy_table(self) -> Table:
        """Mean entropy of rows seeing n ∈ (N/2, N] keys per variant and length N."""
        lengths = self["lengths"]
        table = Table(
            "mean attention entropy (nats) of rows seeing n ∈ (N/2, N] keys, all layers and heads",
            ["variant", *map(str, lengths)],
        )
        for v, e in self["entropy"].items():
            t = torch.tensor(e)
            table.rows.append([v, *(f"{band_entropy(t, n):.3f}" for n in lengths)])
        return table


def run_diagnose(
    model: Any,
    tokenizer: Any,
    texts: Sequence[str],
    variants: Sequence[Variant],
    lengths: Sequence[int],
    *,
    windows: int = 2,
    gradients: bool = True,
    advance: Callable[[int], None] | None = None,
) -> Diagnosis:
    result = Diagnosis(entropy={}, collapse={}, gradients={}, lengths=list(lengths))
    longest = token_windows(tokenizer, texts, max(lengths), windows)
    by_length = {n: token_windows(tokenizer, texts, n, windows) for n in lengths}
    for v in variants:
        label = applied_label(model, v)  # none: the model as loaded, its saved patch included
        ent = torch.stack([attention_entropy(model, w, v) for w in longest]).mean(0)
        result["entropy"][label] = ent.tolist()
        result["collapse"][label], result["gradients"][label] = {}, {}
        with applied(model, v):
            for n, ws in by_length.items():
                stats = [collapse(model, w) for w in ws]
                result["collapse"][label][str(n)] = {
                    k: [sum(s[k][i] for s in stats) / len(stats) for i in range(len(stats[0][k]))] for k in stats[0]
                }
                if gradients:
                    norms = [gradient_norms(model, w) for w in ws]
                    result["gradients"][label][str(n)] = [
                        sum(g[i] for g in norms) / len(norms) for i in range(len(norms[0]))
                    ]
                if advance:
                    advance(1)
    return result
