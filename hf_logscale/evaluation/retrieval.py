"""Retrieval tasks (passkey, needle): scoring prompts by greedy generation and teacher forcing from one prefill,
and what the two tasks share.

Prompts of one cell all have the same token length, so they batch without padding. ``model.generate`` (greedy,
the project's own generation settings, not the checkpoint's sampling defaults) gives the answer text, scored as
YaRN does: the first integer in it must equal the key; generation stops once every row's first integer is
complete, which cannot change a score. Its KV cache, cropped back to the prompt, then takes the
expected answer tokens in one short forward pass: the teacher-forced log-probability of the key's tokens and
whether each is the top-1 prediction.
"""

from __future__ import annotations

import abc
import inspect
import random
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
import transformers
from transformers import GenerationConfig, StoppingCriteria, StoppingCriteriaList

from .. import checks
from ..data.passkey import first_integer
from ..errors import UserError
from ..tables import Table, mean_by
from .batching import input_device, sharded
from .logprobs import decoder_hidden, logits_at
from .task import CellResult, Metric, Setting, Task

__all__ = [
    "MAX_TRIALS",
    "PASSKEY_THRESHOLD",
    "RETRIEVAL",
    "RetrievalResult",
    "RetrievalTask",
    "Trial",
    "cell_rng",
    "score_all",
    "score_prompts",
]

MAX_TRIALS = 10_000  # prompts per (length, depth) cell

RETRIEVAL = (  # the settings every retrieval task takes
    Setting(
        "depths",
        (0.0, 0.25, 0.5, 0.75, 1.0),
        lambda name, v: checks.sequence(name, v, lambda n, d: checks.number(n, d, minimum=0, maximum=1)),
        identity=False,
    ),
    Setting("trials", 10, lambda name, v: checks.integer(name, v, minimum=1, maximum=MAX_TRIALS)),
    Setting("seed", 0, checks.integer),
    Setting("max_new_tokens", 10, lambda name, v: checks.integer(name, v, minimum=1)),
)


@dataclass(frozen=True)
class Trial:
    key: int
    hit: bool  # generation: first integer of the answer equals the key
    generated: str  # the greedy answer, up to max_new_tokens or until its first integer is complete
    tf_top1: bool  # teacher forcing: every answer token is the top-1 prediction
    tf_token_top1: float  # teacher forcing: fraction of answer tokens that are the top-1 prediction
    tf_logprob: float  # teacher forcing: log-probability of the answer tokens (nats)


@dataclass(frozen=True)
class RetrievalResult:
    """The trials of one (length, depth) cell and their means."""

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
    """The random source of one cell: keys and offsets depend on (task, seed, length, depth) only, so cells are
    independent and any subset reproduces."""
    return random.Random(f"{task}/{seed}/{length}/{depth:.6f}")


_ANSWERED = re.compile(r"\d+\D")


class _Answered(StoppingCriteria):
    """Done once a row's answer holds a complete integer (digits, then a non-digit): more tokens cannot change
    its first integer, so the score is the same as with every token generated."""

    def __init__(self, tokenizer, prompt_len: int):
        self.tokenizer, self.prompt_len = tokenizer, prompt_len

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs) -> torch.Tensor:
        texts = self.tokenizer.batch_decode(input_ids[:, self.prompt_len :], skip_special_tokens=True)
        return torch.tensor([bool(_ANSWERED.search(t)) for t in texts], device=input_ids.device)


def _cache(gen):
    return gen.cache if hasattr(gen, "cache") else gen.past_key_values  # renamed in transformers 5


def _with_cache(model, cache) -> dict[str, Any]:
    """The cache keyword: ``cache`` where the model takes it (transformers 5.x), else ``past_key_values``."""
    return {"cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values": cache}


@torch.no_grad()
def score_prompts(
    model,
    tokenizer,
    prompts: Sequence[Sequence[int]],
    answers: Sequence[Sequence[int]],
    keys: Sequence[int],
    max_new_tokens: int = 10,
) -> list[Trial]:
    """Score equal-length ``prompts`` whose expected continuations are ``answers`` (token ids of " {key}")."""
    if len({len(p) for p in prompts}) != 1:
        raise UserError("prompts of one batch must have the same length")
    device = input_device(model)
    x = torch.tensor([list(p) for p in prompts], device=device)
    n = x.shape[1]
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    config = GenerationConfig(
        do_sample=False,
        max_new_tokens=max_new_tokens,
        eos_token_id=model.generation_config.eos_token_id,
        pad_token_id=pad,
        return_dict_in_generate=True,
        output_logits=True,
    )
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()  # "exceeded the model's predefined maximum length": the point here
    try:
        gen = model.generate(
            x,
            attention_mask=torch.ones_like(x),
            generation_config=config,
            stopping_criteria=StoppingCriteriaList([_Answered(tokenizer, n)]),
        )
    finally:
        transformers.logging.set_verbosity(verbosity)
    texts = tokenizer.batch_decode(gen.sequences[:, n:], skip_special_tokens=True)
    width = max(len(a) for a in answers)
    filler = pad if pad is not None else 0
    ans = torch.tensor([list(a) + [filler] * (width - len(a)) for a in answers], device=device)
    logits = gen.logits[0].float()[:, None, :]  # the prompt's last position: the same for both scorings
    if width > 1:
        logits = torch.cat([logits, _answer_logits(model, x, ans, _cache(gen)).to(logits.device)], dim=1)
    logp = torch.log_softmax(logits, dim=-1)
    out = []
    for i, (a, key) in enumerate(zip(answers, keys, strict=True)):
        k = len(a)
        target = ans[i, :k]
        lp = logp[i, torch.arange(k, device=logp.device), target.to(logp.device)]
        top1 = logits[i, :k].argmax(-1) == target.to(logits.device)
        hit = first_integer(texts[i]) == key
        out.append(Trial(key, hit, texts[i], bool(top1.all()), float(top1.float().mean()), float(lp.sum())))
    return out


def _answer_logits(model, prompt: torch.Tensor, ans: torch.Tensor, cache) -> torch.Tensor:
    """Logits [B, width − 1, V] for answer tokens 1.. given the prompt and the answer so far."""
    n = prompt.shape[1]
    try:
        extra = cache.get_seq_length() - n  # the generated tokens; transformers 5 crops by a negative count only
        if extra > 0:
            cache.crop(-extra)
    except (AttributeError, ValueError, RuntimeError):
        # a cache that cannot be cropped back: no crop method (AttributeError), or sliding-window layers past their
        # window (ValueError in transformers 4, RuntimeError in 5) — prefill prompt + answer again
        cache = None
    if cache is not None:
        out = model(
            input_ids=ans[:, :-1],
            **_with_cache(model, cache),
            attention_mask=torch.ones(ans.shape[0], n + ans.shape[1] - 1, dtype=torch.long, device=ans.device),
            use_cache=True,
        )
        return out.logits.float()
    hidden = decoder_hidden(model, torch.cat([prompt, ans[:, :-1]], dim=1))
    return logits_at(model, hidden[:, n:])


def score_all(model, tokenizer, prompts, *, batch_size="auto", max_new_tokens: int = 10, advance=None) -> list[Trial]:
    """Score prompts (objects with ``input_ids``, ``answer_ids``, ``key``) in batches, split across processes
    under ``accelerate launch``; every process gets all trials, in order. Raises ``OutOfMemory`` everywhere if a
    single prompt does not fit on any process."""
    return sharded(
        prompts,
        batch_size,
        len(prompts[0].input_ids),
        lambda batch: score_prompts(
            model,
            tokenizer,
            [p.input_ids for p in batch],
            [p.answer_ids for p in batch],
            [p.key for p in batch],
            max_new_tokens,
        ),
        advance,
    )


PASSKEY_THRESHOLD = 0.8  # YaRN's "passkey context": the largest length with accuracy ≥ 80 %


class RetrievalTask(Task):
    """What passkey and needle share: the metrics, the trial-level records, the tables, the reading."""

    metrics = (
        Metric("accuracy", "accuracy", True),
        Metric("tf_accuracy", "TF key top-1", True),
        Metric("tf_token_accuracy", "TF token top-1", True),
        Metric("tf_logprob", "TF log p", True),
    )
    headline = "accuracy"
    settings = RETRIEVAL
    report_tables = (
        ("accuracy", "Generation accuracy (first integer of the greedy answer equals the key), mean over depths:"),
        (
            "tf_token_accuracy",
            "Teacher-forced: fraction of the key's tokens predicted top-1 (graded), mean over depths:",
        ),
    )

    @abc.abstractmethod
    def prompts(self, tokenizer: Any, spec: Any, data: Any, length: int, depth: float) -> list[Any]:
        """The cell's prompts: objects with ``input_ids``, ``answer_ids`` and ``key``."""

    def run(self, model, tokenizer, spec, data, length, depth, batch_size, advance) -> CellResult:
        prompts = self.prompts(tokenizer, spec, data, length, depth)
        scored = score_all(
            model, tokenizer, prompts, batch_size=batch_size, max_new_tokens=spec.max_new_tokens, advance=advance
        )
        return self.result(RetrievalResult(length, depth, scored))

    def result(self, r: RetrievalResult) -> CellResult:
        trials = [asdict(t) for t in r.trials]
        metrics = {m.name: getattr(r, m.name) for m in self.metrics}
        return CellResult(metrics, {"trials": len(r.trials)}, {"accuracy": {"trials": trials}})

    def table(self, records: Sequence[dict[str, Any]], train_len: int | None) -> Table:
        cells: dict[tuple[int, float], dict[str, dict]] = {}
        for r in records:
            cells.setdefault((r["length"], r["depth"]), {})[r["metric"]] = r
        lengths = sorted({n for n, _ in cells})
        depths = sorted({d for _, d in cells})
        title = f"{self.name}: {records[0]['model']} · {records[0]['variant']}" if records else self.name
        header = ["n", "n / L", *(f"acc @ {d:g}" for d in depths), *(m.label for m in self.metrics)]
        table = Table(title, header, text_columns=0)
        for n in lengths:
            row = [cells[(n, d)] for d in depths]
            ok = [c for c in row if c["accuracy"]["status"] == "ok"]
            accs = [f"{c['accuracy']['value']:.2f}" if c in ok else "OOM" for c in row]
            means = [sum(c[m.name]["value"] for c in ok) / len(ok) if ok else float("nan") for m in self.metrics]
            ratio = f"{n / train_len:g}" if train_len else "—"
            table.rows.append([str(n), ratio, *accs, *(f"{m:.2f}" for m in means)])
        return table

    def findings(self, records, variants, train_len) -> list[str]:
        acc = mean_by(records, self.name, "accuracy")
        if not acc:
            return []
        name = self.name.capitalize()
        lengths = sorted({n for _, n in acc})
        context = {v: _context(acc, v, lengths) for v in variants}
        parts = [f"`{v}` {context[v] if context[v] else '< ' + str(lengths[0])}" for v in variants]
        out = [
            f"{name} context (largest length up to which mean accuracy stays ≥ {PASSKEY_THRESHOLD:.0%}): "
            + ", ".join(parts)
            + "."
        ]
        last = lengths[-1]
        at_last = {v: acc.get((v, last)) for v in variants if acc.get((v, last)) is not None}
        if at_last:
            top = max(at_last.values())
            best = [f"`{v}`" for v, a in at_last.items() if a == top]
            out.append(f"{name} accuracy at n = {last}: best {', '.join(best)} ({top:.2f}).")
        return out


def _context(acc: dict[tuple[str, int], float | None], variant: str, lengths: Sequence[int]) -> int | None:
    """The largest length up to which every length has mean accuracy ≥ ``PASSKEY_THRESHOLD``."""
    best = None
    for n in lengths:
        a = acc.get((variant, n))
        if a is None or a < PASSKEY_THRESHOLD:
            break
        best = n
    return best
