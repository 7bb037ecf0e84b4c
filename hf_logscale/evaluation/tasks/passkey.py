"""The passkey task: at one (length, depth) cell, ``trials`` prompts of exactly ``length`` tokens with random keys
(seeded by seed, length and depth, so cells are independent and reproducible), scored by generation and by
teacher forcing. The template is ``hf_logscale.data.passkey``, shared with the reference models' training mix."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ...data.passkey import KEY_RANGE, PasskeyPrompt, build_passkey, min_length
from ...errors import UserError
from ..retrieval import RetrievalResult, RetrievalTask, cell_rng, score_all
from ..task import Figure, register_task

__all__ = ["Passkey", "passkey", "passkey_prompts"]


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
        raise UserError(f"`trials` must be ≥ 1, got {trials}")
    prompts = passkey_prompts(tokenizer, length, depth, trials, seed)
    scored = score_all(model, tokenizer, prompts, batch_size=batch_size, max_new_tokens=max_new_tokens, advance=advance)
    return RetrievalResult(length, depth, scored)


@register_task
class Passkey(RetrievalTask):
    name = "passkey"
    title = "Passkey retrieval"
    description = "passkey retrieval in filler text (YaRN's template), lengths × depths"
    figures = (Figure("heatmap", "accuracy", "Passkey accuracy (length × depth)", "passkey_heatmap.png"),)

    def dataset(self, spec) -> str:
        return "passkey-template"

    def prepare(self, tokenizer: Any, spec, lengths: Sequence[int]) -> None:
        shortest = min_length(tokenizer)
        if min(lengths) < shortest:
            raise UserError(f"a passkey prompt needs at least {shortest} tokens; got length {min(lengths)}")

    def prompts(self, tokenizer, spec, data, length, depth) -> list[PasskeyPrompt]:
        return passkey_prompts(tokenizer, length, depth, spec.trials, spec.seed)
