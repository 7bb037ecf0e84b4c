"""The passkey-retrieval template, shared by the reference model's training mix and the passkey evaluator.

Template of YaRN's ``eval/passkey.py`` (from landmark attention): an instruction, filler sentences, the key
sentence at a chosen depth, more filler, and the question. Prompts are built in token space, so a prompt has
exactly the requested number of tokens in the model's own tokenizer: the filler before the key starts mid-cycle
and the key always follows a complete sentence, at the requested depth to within one filler sentence.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..errors import UserError

__all__ = ["INTRO", "FILLER", "NEEDLE", "QUESTION", "PasskeyPrompt", "build_passkey", "first_integer", "min_length"]

INTRO = (
    "There is an important info hidden inside a lot of irrelevant text. Find it and memorize them. "
    "I will quiz you about the important information there."
)
FILLER = (" The grass is green.", " The sky is blue.", " The sun is yellow.", " Here we go.", " There and back again.")
NEEDLE = " The pass key is {key}. Remember it. {key} is the pass key."
QUESTION = " What is the pass key? The pass key is"
KEY_RANGE = (1, 50000)


@dataclass(frozen=True)
class PasskeyPrompt:
    input_ids: list[int]  # exactly the requested length, BOS included when the tokenizer has one
    key: int
    answer_ids: list[int]  # tokens of " {key}": what a perfect model generates next
    depth: float  # realised fraction of the filler placed before the key
    key_start: int  # index of the key sentence's first token


def _ids(tokenizer: Any, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def min_length(tokenizer: Any) -> int:
    """The shortest prompt ``build_passkey`` can make (no filler) for the longest key."""
    bos = 1 if tokenizer.bos_token_id is not None else 0
    fixed = (INTRO, NEEDLE.format(key=KEY_RANGE[1]), QUESTION)
    return bos + sum(len(_ids(tokenizer, t)) for t in fixed)


def build_passkey(tokenizer: Any, length: int, depth: float, key: int) -> PasskeyPrompt:
    """A passkey prompt of exactly ``length`` tokens with the key sentence after ``depth`` of the filler."""
    if not 0.0 <= depth <= 1.0:
        raise UserError(f"`depth` must be in [0, 1], got {depth}")
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    intro, needle, question = _ids(tokenizer, INTRO), _ids(tokenizer, NEEDLE.format(key=key)), _ids(tokenizer, QUESTION)
    sentences = [_ids(tokenizer, s) for s in FILLER]
    budget = length - len(bos) - len(intro) - len(needle) - len(question)
    if budget < 0:
        raise UserError(f"a passkey prompt needs at least {length - budget} tokens, got length={length}")
    # Suffix: whole filler sentences from the start of the cycle; choose how many so the needle sits at `depth`.
    ends, total, i = [0], 0, 0
    while total < budget:
        total += len(sentences[i % len(sentences)])
        if total <= budget:
            ends.append(total)
        i += 1
    target_suffix = (1.0 - depth) * budget
    suffix_len = min(ends, key=lambda e: abs(e - target_suffix))
    suffix = [t for k in range(len(ends) - 1) for t in sentences[k % len(sentences)]][:suffix_len]
    # Prefix: the tail of a long filler stream (it ends on a sentence boundary, right before the needle).
    prefix_len = budget - suffix_len
    stream: list[int] = []
    k = 0
    while len(stream) < prefix_len:
        stream = sentences[-1 - (k % len(sentences))] + stream
        k += 1
    prefix = stream[len(stream) - prefix_len :] if prefix_len else []
    ids = bos + intro + prefix + needle + suffix + question
    assert len(ids) == length  # by construction
    return PasskeyPrompt(
        input_ids=ids,
        key=key,
        answer_ids=_ids(tokenizer, f" {key}"),
        depth=prefix_len / budget if budget else 0.0,
        key_start=len(bos) + len(intro) + prefix_len,
    )


_INT = re.compile(r"\d+")


def first_integer(text: str) -> int | None:
    """The first integer in a generated answer (YaRN's scoring), or None."""
    m = _INT.search(text)
    return int(m.group()) if m else None
