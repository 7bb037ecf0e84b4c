"""``diagnose``: attention entropy vs n per layer, token collapse and gradient flow vs length, for several variants,
on windows of held-out text; results as JSON and figures."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from ..patching import patched
from ..variants import parse_variant
from .entropy import attention_entropy
from .hidden import collapse, gradient_norms

__all__ = ["Diagnosis", "diagnose", "token_windows"]


def token_windows(tokenizer: Any, texts: Sequence[str], length: int, count: int) -> list[torch.Tensor]:
    """Up to ``count`` windows [1, length] (BOS + length − 1 document tokens), at most one per document."""
    out = []
    for t in texts:
        ids = tokenizer(t, add_special_tokens=False)["input_ids"]
        head = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
        if len(ids) >= length - len(head):
            out.append(torch.tensor([head + ids[: length - len(head)]]))
        if len(out) == count:
            break
    if not out:
        raise ValueError(f"no document has the {length} tokens a window needs")
    return out


class Diagnosis(dict):
    """{"entropy": {variant: [layers][heads][T]}, "collapse": {variant: {length: {...}}}, "gradients": {...}}"""

    def save(self, path: Path) -> Path:
        path.write_text(json.dumps(self, indent=1))
        return path


def diagnose(
    model: Any,
    tokenizer: Any,
    texts: Sequence[str],
    variants: Sequence[str],
    lengths: Sequence[int],
    *,
    windows: int = 2,
    gradients: bool = True,
    advance: Callable[[int], None] | None = None,
) -> Diagnosis:
    result = Diagnosis(entropy={}, collapse={}, gradients={}, lengths=list(lengths))
    longest = token_windows(tokenizer, texts, max(lengths), windows)
    by_length = {n: token_windows(tokenizer, texts, n, windows) for n in lengths}
    for spec in variants:
        v = parse_variant(spec)
        label = v.label
        ent = torch.stack([attention_entropy(model, w, v) for w in longest]).mean(0)
        result["entropy"][label] = ent.tolist()
        result["collapse"][label], result["gradients"][label] = {}, {}
        with patched(model, v):
            for n, ws in by_length.items():
                stats = [collapse(model, w) for w in ws]
                result["collapse"][label][str(n)] = {
                    k: [sum(s[k][i] for s in stats) / len(stats) for i in range(len(stats[0][k]))] for k in stats[0]
                }
                if gradients:
                    norms = [gradient_norms(model, w) for w in ws]
                    result["gradients"][label][str(n)] = [sum(g[i] for g in norms) / len(norms)
                                                          for i in range(len(norms[0]))]  # fmt: skip
                if advance:
                    advance(1)
    return result
