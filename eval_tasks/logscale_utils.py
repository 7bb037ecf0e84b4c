"""Data and scoring for the hf-logscale lm-eval tasks: passkey retrieval, needle in a haystack and long-document
perplexity on the offline sample corpus, at the lengths given in ``--metadata`` (``max_seq_lengths``).

Prompts are built by hf-logscale's own generators in the evaluated model's tokenizer (``tokenizer`` or
``pretrained`` from ``--metadata``/``--model_args``; the built-in reference model's otherwise), so lm-eval scores the
very items ``hf-logscale eval`` scores. Each item's text round-trips to the same tokens (checked); lm-eval adds the
tokenizer's BOS in front, as the project's evaluators do.

Per-length metrics are named by the length ("256", "512", … "131072", the powers of two RULER also uses); a length
outside that list still counts in the overall metric.
"""

from __future__ import annotations

import datasets

from hf_logscale.data.passkey import first_integer
from hf_logscale.data.sources import load_documents
from hf_logscale.evaluation import EvalSpec, Haystack, needle_prompts, passkey_prompts, tokenize_documents

LENGTHS = [256 * 2**k for k in range(10)]
DEFAULT_LENGTHS = [256, 512, 1024]


def _spec(task: str, kwargs: dict) -> EvalSpec:
    """The task's settings from lm-eval's ``--metadata`` (``max_seq_lengths`` and those the task takes, e.g.
    depths, trials, seed, dataset), checked exactly as ``hf-logscale eval`` checks them."""
    return EvalSpec.taking(task, kwargs.get("max_seq_lengths", DEFAULT_LENGTHS), kwargs)


def _tokenizer(kwargs: dict):
    from transformers import AutoTokenizer

    from hf_logscale.models import REFERENCE_MODEL

    name = kwargs.get("tokenizer") or kwargs.get("pretrained") or str(REFERENCE_MODEL)
    return AutoTokenizer.from_pretrained(name)


def _text(tok, ids: list[int]) -> str:
    """The text lm-eval will see; tokenising it (with the tokenizer's own special tokens) gives back ``ids``."""
    body = ids[1:] if tok.bos_token_id is not None and ids[:1] == [tok.bos_token_id] else ids
    text = tok.decode(body, clean_up_tokenization_spaces=False)
    if tok(text)["input_ids"] != ids:
        raise ValueError("a prompt does not survive decoding and re-tokenising; lm-eval would score other tokens")
    return text


def _split(docs: list[dict]) -> dict[str, datasets.Dataset]:
    return {"test": datasets.Dataset.from_list(docs)}


def passkey_dataset(**kwargs) -> dict[str, datasets.Dataset]:
    tok, spec = _tokenizer(kwargs), _spec("passkey", kwargs)
    docs = []
    for n in spec.lengths:
        for depth in spec.depths:
            for p in passkey_prompts(tok, n, depth, spec.trials, spec.seed):
                docs.append({"input": _text(tok, p.input_ids), "key": p.key, "length": n, "depth": depth})
    return _split(docs)


def needle_dataset(**kwargs) -> dict[str, datasets.Dataset]:
    tok, spec = _tokenizer(kwargs), _spec("needle", kwargs)
    haystack = Haystack(tok, [d.text for d in load_documents(spec.dataset, field=spec.field, split=spec.split)])
    docs = []
    for n in spec.lengths:
        for depth in spec.depths:
            for p in needle_prompts(tok, haystack, n, depth, spec.trials, spec.seed):
                docs.append({"input": _text(tok, p.input_ids), "key": p.key, "length": n, "depth": depth})
    return _split(docs)


def ppl_dataset(**kwargs) -> dict[str, datasets.Dataset]:
    """Each document long enough, cut to n − 1 tokens (BOS + n − 1 = n): the truncate protocol of
    ``hf-logscale eval ppl``."""
    tok, spec = _tokenizer(kwargs), _spec("ppl", kwargs)
    if spec.mode != "truncate":
        raise ValueError(f"logscale_ppl scores the truncate protocol only, got mode={spec.mode!r}")
    ids = tokenize_documents(tok, [d.text for d in load_documents(spec.dataset, field=spec.field, split=spec.split)])
    docs = []
    for n in spec.lengths:
        for i, doc in enumerate(ids):
            if len(doc) >= n - 1:
                window = doc[: n - 1]
                text = tok.decode(window, clean_up_tokenization_spaces=False)
                if tok(text, add_special_tokens=False)["input_ids"] != window:
                    raise ValueError(f"document {i} does not survive decoding at length {n}")
                docs.append({"text": text, "tokens": len(window), "length": n, "doc": i})
    return _split(docs)


def _per_length(doc: dict, value) -> dict:
    out = {str(n): -1 for n in LENGTHS}
    if doc["length"] in LENGTHS:
        out[str(doc["length"])] = value
    return out


def process_retrieval(doc: dict, results: list[str]) -> dict:
    hit = float(first_integer(results[0]) == int(doc["key"]))
    return {"acc": hit, **_per_length(doc, hit)}


def mean_present(values: list) -> float:
    present = [v for v in values if v != -1]
    return sum(present) / len(present) if present else -1


def process_ppl(doc: dict, results: list[float]) -> dict:
    (loglikelihood,) = results
    item = (loglikelihood, doc["tokens"])
    return {"perplexity": item, **_per_length(doc, item)}


def token_perplexity(items: list) -> float:
    import math

    present = [x for x in items if x != -1]
    if not present:
        return -1
    return math.exp(-sum(ll for ll, _ in present) / sum(n for _, n in present))
