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

from hf_logscale import checks
from hf_logscale.data.passkey import first_integer
from hf_logscale.data.sources import load_documents
from hf_logscale.eval import Haystack, build_needle, passkey_prompts
from hf_logscale.eval.retrieval import cell_rng
from hf_logscale.eval.run import MAX_LENGTH, MAX_TRIALS

LENGTHS = [256 * 2**k for k in range(10)]
DEFAULTS = {"max_seq_lengths": [256, 512, 1024], "depths": [0.0, 0.25, 0.5, 0.75, 1.0], "trials": 10, "seed": 0}


def _setting(kwargs: dict, key: str):
    """A task setting from lm-eval's ``--metadata``, checked with the bounds ``hf-logscale eval`` applies."""
    value = kwargs.get(key, DEFAULTS[key])
    if key == "max_seq_lengths":
        return checks.sequence(key, value, lambda n, v: checks.integer(n, v, minimum=2, maximum=MAX_LENGTH))
    if key == "depths":
        return checks.sequence(key, value, lambda n, v: checks.number(n, v, minimum=0, maximum=1))
    if key == "trials":
        return checks.integer(key, value, minimum=1, maximum=MAX_TRIALS)
    return checks.integer(key, value)


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
    tok = _tokenizer(kwargs)
    docs = []
    for n in _setting(kwargs, "max_seq_lengths"):
        for depth in _setting(kwargs, "depths"):
            for p in passkey_prompts(
                tok, int(n), float(depth), int(_setting(kwargs, "trials")), int(_setting(kwargs, "seed"))
            ):
                docs.append({"input": _text(tok, p.input_ids), "key": p.key, "length": int(n), "depth": float(depth)})
    return _split(docs)


def needle_dataset(**kwargs) -> dict[str, datasets.Dataset]:
    tok = _tokenizer(kwargs)
    haystack = Haystack(tok, [d.text for d in load_documents(kwargs.get("dataset", "sample"))])
    docs = []
    for n in _setting(kwargs, "max_seq_lengths"):
        for depth in _setting(kwargs, "depths"):
            rng = cell_rng("needle", int(_setting(kwargs, "seed")), int(n), float(depth))
            for _ in range(int(_setting(kwargs, "trials"))):
                key, offset = rng.randint(1, 50000), rng.random()
                p = build_needle(tok, haystack, int(n), float(depth), key, offset)
                docs.append({"input": _text(tok, p.input_ids), "key": key, "length": int(n), "depth": float(depth)})
    return _split(docs)


def ppl_dataset(**kwargs) -> dict[str, datasets.Dataset]:
    """Each document long enough, cut to n − 1 tokens (BOS + n − 1 = n): the truncate protocol of
    ``hf-logscale eval ppl``."""
    tok = _tokenizer(kwargs)
    texts = [d.text for d in load_documents(kwargs.get("dataset", "sample"))]
    ids = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
    docs = []
    for n in _setting(kwargs, "max_seq_lengths"):
        for i, doc in enumerate(ids):
            if len(doc) >= int(n) - 1:
                window = doc[: int(n) - 1]
                text = tok.decode(window, clean_up_tokenization_spaces=False)
                if tok(text, add_special_tokens=False)["input_ids"] != window:
                    raise ValueError(f"document {i} does not survive decoding at length {n}")
                docs.append({"text": text, "tokens": len(window), "length": int(n), "doc": i})
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
