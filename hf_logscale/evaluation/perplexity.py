"""Perplexity at a context length n, over documents, in two modes.

- ``truncate``: each document long enough gives one window, its first n tokens (BOS + n − 1 document tokens when
  the tokenizer has a BOS), every token scored — YaRN's Proof-pile protocol.
- ``sliding``: windows of exactly n tokens (BOS + n − 1 document tokens) start every ``stride`` tokens, the last one
  aligned to the document's end; each window scores only the tokens no earlier window scored, so every document
  token is scored exactly once, with between n − stride and n tokens of context (Press et al.'s strided protocol).

Documents shorter than the window are skipped and counted, never padded into the score. All windows have the same
length, so they batch. The NLL is token-weighted, computed in float32 from hidden states through the LM head in
chunks (``logprobs``); the per-position curve buckets target positions (tokens of context) at powers of two.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ..distributed import process_group
from ..errors import UserError
from .batching import input_device, sharded
from .logprobs import decoder_hidden, next_token_nll

__all__ = ["MODES", "PerplexityResult", "Window", "perplexity", "perplexity_windows", "tokenize_documents"]

MODES = ("truncate", "sliding")


@dataclass(frozen=True)
class Window:
    doc: int  # index of the document
    start: int  # document index of the window's first document token
    ids: list[int]  # exactly n tokens
    score_from: int  # targets ids[t] for t ≥ score_from are scored (t ≥ 1)


@dataclass(frozen=True)
class PerplexityResult:
    length: int
    nll: float  # nats per scored token
    tokens: int  # scored tokens
    bytes: int  # UTF-8 bytes of the scored text
    documents: int  # documents used
    skipped: int  # documents too short for the window
    windows: int
    curve: dict[str, list] = field(default_factory=dict)  # edges (positions), nll and tokens per bucket
    # per window, in window order: (document, NLL summed over its scored tokens, scored tokens) — for resampling
    per_window: list[tuple[int, float, int]] = field(default_factory=list)

    @property
    def perplexity(self) -> float:
        return math.exp(self.nll)

    @property
    def bits_per_byte(self) -> float:
        return self.nll * self.tokens / (math.log(2) * self.bytes)


def tokenize_documents(tokenizer: Any, texts: Sequence[str]) -> list[list[int]]:
    """Token ids of each text, without special tokens (windows add the BOS themselves)."""
    return [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]


def perplexity_windows(
    docs: Sequence[Sequence[int]],
    length: int,
    mode: str = "truncate",
    stride: int | None = None,
    bos: int | None = None,
    max_documents: int | None = None,
) -> tuple[list[Window], list[tuple[int, int, int]], int]:
    """Windows for ``length``, the scored span (doc, start, end) of each used document, and the skipped count."""
    if mode not in MODES:
        raise UserError(f"`mode` must be one of {', '.join(MODES)}, got {mode!r}")
    head = [bos] if bos is not None else []
    m = length - len(head)  # document tokens per window
    if m < 2:
        raise UserError(f"length {length} is too short for a perplexity window")
    if mode == "sliding":
        stride = length // 2 if stride is None else stride
        if not 1 <= stride <= m:
            raise UserError(f"`stride` must be in [1, {m}] for length {length} (window minus BOS), got {stride}")
    first = 0 if head else 1  # the first document token is scored only when a BOS precedes it
    windows: list[Window] = []
    spans: list[tuple[int, int, int]] = []
    skipped = 0
    for d, ids in enumerate(docs):
        if len(ids) < m:
            skipped += 1
            continue
        if max_documents is not None and len(spans) >= max_documents:
            break
        if mode == "truncate":
            windows.append(Window(d, 0, head + list(ids[:m]), 1))
            spans.append((d, first, m))
            continue
        starts = list(range(0, len(ids) - m, stride)) + [len(ids) - m]
        done = 0  # document tokens [0, done) are scored (or unscorable)
        for s in starts:
            begin = max(done, s + first)  # first document index this window scores
            if begin >= s + m:
                continue
            windows.append(Window(d, s, head + list(ids[s : s + m]), len(head) + begin - s))
            done = s + m
        spans.append((d, first, len(ids)))
    return windows, spans, skipped


def _bucket_edges(length: int) -> list[int]:
    edges = [1]
    while edges[-1] * 2 < length:
        edges.append(edges[-1] * 2)
    return edges + [length]


@torch.no_grad()
def perplexity(
    model: Any,
    tokenizer: Any,
    docs: Sequence[Sequence[int]],
    length: int,
    *,
    mode: str = "truncate",
    stride: int | None = None,
    batch_size: int | str | None = "auto",
    max_documents: int | None = None,
    advance: Callable[[int], None] | None = None,
) -> PerplexityResult:
    """Perplexity of ``model`` at ``length`` tokens over tokenised ``docs`` (see ``tokenize_documents``).
    ``advance(k)`` is called after every k windows. Raises ``OutOfMemory`` if one window does not fit."""
    windows, spans, skipped = perplexity_windows(docs, length, mode, stride, tokenizer.bos_token_id, max_documents)
    if not windows:
        longest = max((len(d) for d in docs), default=0)
        raise UserError(
            f"no document has the {length - (tokenizer.bos_token_id is not None)} tokens a window of {length} needs "
            f"({len(docs)} documents, longest {longest} tokens); use shorter lengths or longer documents"
        )
    device = input_device(model)
    pos_sum = torch.zeros(length - 1, dtype=torch.float64)
    pos_count = torch.zeros(length - 1, dtype=torch.int64)
    positions = torch.arange(1, length)

    def run(batch: Sequence[Window]) -> list[tuple[int, float, int]]:
        x = torch.tensor([w.ids for w in batch], device=device)
        targets = x[:, 1:].clone()
        start = torch.tensor([w.score_from for w in batch], device=device)
        targets[positions.to(device)[None, :] < start[:, None]] = -100
        nll = next_token_nll(model, decoder_hidden(model, x)[:, :-1], targets).double().cpu()
        scored = (targets != -100).cpu()
        pos_sum.add_(nll.sum(0))
        pos_count.add_(scored.sum(0))
        return [(w.doc, float(row.sum()), int(k.sum())) for w, row, k in zip(batch, nll, scored, strict=True)]

    per_window = sharded(windows, batch_size, length, run, advance)  # each process its share of the windows
    process_group().sum_(pos_sum, pos_count)  # the per-position sums of all processes
    edges = _bucket_edges(length)
    curve_nll, curve_tokens = [], []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        c = int(pos_count[lo - 1 : hi - 1].sum())
        curve_tokens.append(c)
        curve_nll.append(float(pos_sum[lo - 1 : hi - 1].sum()) / c if c else None)
    tokens = int(pos_count.sum())
    n_bytes = sum(
        len(tokenizer.decode(docs[d][a:b], skip_special_tokens=True, clean_up_tokenization_spaces=False).encode())
        for d, a, b in spans
    )
    return PerplexityResult(
        length=length,
        nll=float(pos_sum.sum()) / tokens,
        tokens=tokens,
        bytes=n_bytes,
        documents=len(spans),
        skipped=skipped,
        windows=len(windows),
        curve={"edges": edges, "nll": curve_nll, "tokens": curve_tokens},
        per_window=per_window,
    )
