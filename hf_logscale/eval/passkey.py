"""Passkey retrieval at one (length, depth) cell: ``trials`` prompts of exactly ``length`` tokens with random keys
(seeded by seed, length and depth, so cells are independent and reproducible), scored by generation and by
teacher forcing (``retrieval``). The template is ``hf_logscale.data.passkey``, shared with the reference model's
training mix."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..data.passkey import KEY_RANGE, PasskeyPrompt, build_passkey
from .retrieval import Trial, score_all

__all__ = ["RetrievalResult", "passkey", "passkey_prompts"]


@dataclass(frozen=True)
class RetrievalResult:
    length: int
    depth: float
    trials: list[Trial]

    @property
    def accuracy(self) -> float:
        return sum(t.hit for t in self.trials) / len(self.trials)

    @property
    def tf_accuracy(self) -> float:
        return sum(t.tf_top1 for t in self.trials) / len(self.trials)

    @property
    def tf_token_accuracy(self) -> float:
        return sum(t.tf_token_top1 for t in self.trials) / len(self.trials)

    @property
    def tf_logprob(self) -> float:
        return sum(t.tf_logprob for t in self.trials) / len(self.trials)


def cell_rng(task: str, seed: int, length: int, depth: float) -> random.Random:
    return random.Random(f"{task}/{seed}/{length}/{depth:.6f}")


def passkey_prompts(tokenizer: Any, length: int, depth: float, trials: int, seed: int = 0) -> list[PasskeyPrompt]:
    rng = cell_rng("passkey", seed, length, depth)
    return [build_passkey(tokenizer, length, depth, rng.randint(*KEY_RANGE)) for _ in range(trials)]


def passkey(
    model: Any,
    tokenizer: Any,
    length: int,
    depth: float,
    *,
    trials: int = 10,
    seed: int = 0,
    batch_size: int | str | None = "auto",
    max_new_tokens: int = 10,
    advance: Callable[[int], None] | None = None,
) -> RetrievalResult:
    """Passkey accuracy of ``model`` at ``length`` tokens with the key at ``depth``."""
    if trials < 1:
        raise ValueError(f"`trials` must be ≥ 1, got {trials}")
    prompts = passkey_prompts(tokenizer, length, depth, trials, seed)
    scored = score_all(model, tokenizer, prompts, batch_size=batch_size, max_new_tokens=max_new_tokens, advance=advance)
    return RetrievalResult(length, depth, scored)
