"""The needle-in-a-haystack task at one (length, depth) cell: real text from a corpus as the haystack, a needle sentence
holding a random integer key inserted whole at the sentence boundary nearest the requested depth, the question at
the end; exact-match scoring (the first integer of the greedy answer equals the key) plus teacher forcing.

Prompts are built in token space to exactly ``length`` tokens: BOS, haystack sentences (each tokenised on its own,
with its leading space), the needle, the rest of the haystack cut to fit, the question. The needle is never cut;
only the haystack's tail is. The default needle and question are the passkey template's, so a model that learned
the passkey task is probed on natural text instead of repeated filler.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ...data.passkey import KEY_RANGE, NEEDLE, QUESTION
from ...data.sources import load_documents
from ...errors import UserError
from ..retrieval import RETRIEVAL, RetrievalResult, RetrievalTask, cell_rng, score_all
from ..task import CORPUS, Figure, register_task

__all__ = ["Haystack", "Needle", "NeedlePrompt", "build_needle", "needle", "needle_prompts"]

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


@dataclass(frozen=True)
class NeedlePrompt:
    input_ids: list[int]
    key: int
    answer_ids: list[int]
    depth: float  # realised: haystack tokens before the needle / haystack tokens
    needle_start: int
    needle_len: int


class Haystack:
    """The corpus as a stream of tokenised sentences (documents in order)."""

    def __init__(self, tokenizer: Any, texts: Sequence[str]):
        sentences = [" " + s for t in texts for s in _SENTENCE_END.split(t.strip()) if s]
        self.sentences: list[list[int]] = tokenizer(sentences, add_special_tokens=False)["input_ids"]
        self.starts = [0]  # token offset of each sentence in the stream
        for s in self.sentences:
            self.starts.append(self.starts[-1] + len(s))

    @property
    def tokens(self) -> int:
        return self.starts[-1]

    def take(self, first: int, budget: int) -> tuple[list[int], list[int]]:
        """``budget`` tokens starting at sentence ``first``, and the sentence boundaries inside them."""
        out: list[int] = []
        bounds = [0]
        i = first
        while len(out) < budget:
            out += self.sentences[i]
            bounds.append(len(out))
            i += 1
        return out[:budget], [b for b in bounds if b <= budget]

    def last_start(self, budget: int) -> int:
        """The last sentence from which ``budget`` tokens remain."""
        return bisect.bisect_right(self.starts, self.tokens - budget) - 1


def build_needle(
    tokenizer: Any,
    haystack: Haystack,
    length: int,
    depth: float,
    key: int,
    offset: float = 0.0,
    needle: str = NEEDLE,
    question: str = QUESTION,
) -> NeedlePrompt:
    if not 0.0 <= depth <= 1.0:
        raise UserError(f"`depth` must be in [0, 1], got {depth}")
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    ids = lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    needle_ids, question_ids = ids(needle.format(key=key)), ids(question)
    budget = length - len(bos) - len(needle_ids) - len(question_ids)
    if budget < 0:
        raise UserError(f"a needle prompt needs at least {length - budget} tokens, got length={length}")
    if budget > haystack.tokens:
        raise UserError(f"the haystack corpus has {haystack.tokens} tokens; length {length} needs {budget}")
    if not 0.0 <= offset < 1.0:
        raise UserError(f"`offset` must be in [0, 1), got {offset}")
    # the haystack starts at a sentence chosen by `offset` among those with `budget` tokens after them
    hay, bounds = haystack.take(int(offset * (haystack.last_start(budget) + 1)), budget)
    cut = min(bounds, key=lambda b: abs(b - depth * budget))
    prompt = bos + hay[:cut] + needle_ids + hay[cut:] + question_ids
    assert len(prompt) == length  # by construction
    return NeedlePrompt(prompt, key, ids(f" {key}"), cut / budget if budget else 0.0, len(bos) + cut, len(needle_ids))


def needle_prompts(
    tokenizer: Any,
    haystack: Haystack,
    length: int,
    depth: float,
    trials: int,
    seed: int = 0,
    needle_text: str = NEEDLE,
    question: str = QUESTION,
) -> list[NeedlePrompt]:
    """The ``trials`` prompts of one cell: keys and haystack offsets drawn from the cell's own random source."""
    rng = cell_rng("needle", seed, length, depth)
    prompts = []
    for _ in range(trials):
        key, offset = rng.randint(*KEY_RANGE), rng.random()
        prompts.append(build_needle(tokenizer, haystack, length, depth, key, offset, needle_text, question))
    return prompts


def needle(
    model: Any,
    tokenizer: Any,
    haystack: Haystack,
    length: int,
    depth: float,
    *,
    trials: int = 10,
    seed: int = 0,
    batch_size: int | str | None = "auto",
    max_new_tokens: int = 10,
    needle_text: str = NEEDLE,
    question: str = QUESTION,
    advance: Callable[[int], None] | None = None,
) -> RetrievalResult:
    """Needle-retrieval accuracy of ``model`` at ``length`` tokens with the needle at ``depth``."""
    if "{key}" not in needle_text:
        raise UserError("the needle sentence must contain {key}")
    if trials < 1:
        raise UserError(f"`trials` must be ≥ 1, got {trials}")
    prompts = needle_prompts(tokenizer, haystack, length, depth, trials, seed, needle_text, question)
    scored = score_all(model, tokenizer, prompts, batch_size=batch_size, max_new_tokens=max_new_tokens, advance=advance)
    return RetrievalResult(length, depth, scored)


@register_task
class Needle(RetrievalTask):
    name = "needle"
    title = "Needle retrieval"
    description = "a key sentence in real text (the corpus as haystack), lengths × depths"
    settings = (*CORPUS, *RETRIEVAL)
    figures = (Figure("heatmap", "accuracy", "Needle accuracy (length × depth)", "needle_heatmap.png"),)

    def prepare(self, tokenizer: Any, spec, lengths: Sequence[int]) -> Haystack:
        haystack = Haystack(
            tokenizer, [d.text for d in load_documents(spec.dataset, field=spec.field, split=spec.split)]
        )
        if max(lengths) > haystack.tokens:
            raise UserError(
                f"dataset {spec.dataset!r} has {haystack.tokens} tokens of haystack; length {max(lengths)} needs more"
            )
        return haystack

    def prompts(self, tokenizer, spec, data, length, depth) -> list[NeedlePrompt]:
        return needle_prompts(tokenizer, data, length, depth, spec.trials, spec.seed)
