"""The offline sample corpus, the shipped reference model and tokenizer, the passkey template, and the training
script (smoke run and determinism)."""

import hashlib
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import transformers

import hf_logscale as hls
from hf_logscale.data import HELD_OUT, build_passkey, first_integer, sample_corpus
from hf_logscale.data.passkey import FILLER, INTRO, NEEDLE, QUESTION, min_length
from hf_logscale.models import REFERENCE_MODEL, REFERENCE_MODELS, train_length

ROOT = Path(__file__).resolve().parent.parent


HELD_DIGEST = "7d8769d0471904f2"  # sha256 of the held-out books' text, first 16 hex digits


@pytest.fixture(scope="module")
def reference():
    return hls.load()


def test_corpus_books_and_split_are_fixed():
    books = sample_corpus("all")
    assert len(books) == 66 and books[0].name == "Genesis" and books[-1].name == "Revelation"
    train, held = sample_corpus("train"), sample_corpus("heldout")
    assert {b.name for b in train}.isdisjoint({b.name for b in held})
    assert [b.name for b in held] == ["Isaiah", "Jeremiah", "Ezekiel", "Luke", "Romans"] == list(HELD_OUT)
    assert len(train) + len(held) == 66
    longest = sorted(books, key=lambda b: len(b.text), reverse=True)[:5]
    assert len({b.name for b in longest} & set(HELD_OUT)) >= 3
    digest = hashlib.sha256("\n".join(b.text for b in held).encode()).hexdigest()[:16]
    assert digest == HELD_DIGEST  # the held-out text itself is stable, not just the names
    with pytest.raises(ValueError, match="`split` must be one of train, heldout, all"):
        sample_corpus("test")


def test_tokenizer_round_trips_and_splits_digits(reference):
    _, tok = reference
    text = "In the beginning God created the heaven and the earth. Pass key 40716; ünïcödé — ok.\n"
    ids = tok(text)["input_ids"]
    assert ids[0] == tok.bos_token_id
    assert tok.decode(ids, skip_special_tokens=True) == text
    digits = tok("31415", add_special_tokens=False)["input_ids"]
    assert [tok.decode([i]) for i in digits] == list("31415")
    assert tok.eos_token_id is not None and tok.eos_token_id != tok.bos_token_id


def test_reference_model_loads_offline_as_default(reference):
    model, _ = reference
    assert model.config.model_type == "llama" and model.config.max_position_embeddings == 256
    size = (REFERENCE_MODEL / "model.safetensors").stat().st_size
    assert size <= 25 * 2**20
    n_params = sum(p.numel() for p in model.parameters())
    assert 1e6 < n_params < 1e7


REFERENCES = ["reference", "reference:seed1", "reference:nope", "reference:prope", "reference:ssmax"]
needs_v5 = pytest.mark.skipif(int(transformers.__version__.split(".")[0]) < 5, reason="proportional RoPE is in 5.x")


@pytest.mark.parametrize(
    "name",
    [
        n if n in ("reference", "reference:seed1", "reference:ssmax") else pytest.param(n, marks=needs_v5)
        for n in REFERENCES
    ],
)
@torch.no_grad()
def test_reference_models_load_offline_and_match_their_cards(name):
    """Each reference model loads by name, offline, and re-measures (not reads back) its card's held-out perplexity
    at L, written here from the card's protocol: every token of the held-out books once, disjoint windows of BOS +
    L − 1 tokens, the last window of a book aligned to its end and scoring only tokens no earlier window scored."""
    model, tok = hls.load(name)
    folder = REFERENCE_MODELS[name]
    metrics = json.loads((folder / "metrics.json").read_text())
    L = metrics["train_len"]
    assert train_length(model).value == L == 256
    assert (folder / "model.safetensors").stat().st_size <= 12 * 2**20
    assert (metrics.get("scale") == "ssmax") == (name == "reference:ssmax") == hls.is_patched(model)
    m = L - 1
    total, count = 0.0, 0
    for book in sample_corpus("heldout"):
        ids = tok(book.text, add_special_tokens=False)["input_ids"]
        starts = [*range(0, len(ids) - m, m), len(ids) - m]
        windows = torch.tensor([[tok.bos_token_id, *ids[s : s + m]] for s in starts])
        nll = torch.cat(
            [
                torch.nn.functional.cross_entropy(model(w).logits[:, :-1].transpose(1, 2), w[:, 1:], reduction="none")
                for w in windows.split(128)
            ]
        )  # [windows, m]: target j of window i is book token starts[i] + j
        fresh = [m] * (len(starts) - 1) + [starts[-1] + m - (starts[-2] + m if len(starts) > 1 else 0)]
        for row, k in zip(nll, fresh, strict=True):
            total += float(row[m - k :].double().sum())
            count += k
    ppl = math.exp(total / count)
    assert count == metrics["lengths"][str(L)]["heldout_tokens"]
    assert ppl == pytest.approx(metrics["lengths"][str(L)]["heldout_ppl"], rel=1e-4)
    assert ppl < metrics["lengths"][str(L)]["unigram_ppl"] / 5, ppl


def _passkey_hits(model, tok, n: int, trials: int, seed: int) -> int:
    g = torch.Generator().manual_seed(seed)
    hits = 0
    for _ in range(trials):
        key = int(torch.randint(1, 50001, (1,), generator=g))
        p = build_passkey(tok, n, float(torch.rand(1, generator=g)), key)
        out = model.generate(
            torch.tensor([p.input_ids]), max_new_tokens=8, do_sample=False, pad_token_id=tok.pad_token_id
        )
        hits += first_integer(tok.decode(out[0, n:], skip_special_tokens=True)) == key
    return hits


@torch.no_grad()
def test_reference_passkey_fails_beyond_training_length(reference):
    model, tok = reference
    assert _passkey_hits(model, tok, 1024, 30, seed=7) <= 3  # 4× L with no scaling: retrieval is gone


@torch.no_grad()
def test_reference_passkey_accuracy_at_training_length(reference):
    model, tok = reference
    assert _passkey_hits(model, tok, 256, 100, seed=123) >= 90


@pytest.mark.parametrize("length", [min_length, 200, 256, 1000, 4096])
@pytest.mark.parametrize("depth", [0.0, 0.1, 0.5, 0.9, 1.0])
def test_passkey_prompts_have_exact_length_and_depth(reference, length, depth):
    _, tok = reference
    n = length(tok) if callable(length) else length
    p = build_passkey(tok, n, depth, 40716)
    assert len(p.input_ids) == n and p.input_ids[0] == tok.bos_token_id
    text = tok.decode(p.input_ids, skip_special_tokens=True)
    assert text.count("The pass key is 40716. Remember it. 40716 is the pass key.") == 1
    assert text.endswith("What is the pass key? The pass key is")
    count = lambda s: len(tok(s, add_special_tokens=False)["input_ids"])  # noqa: E731
    longest_sentence = max(count(s) for s in FILLER)
    budget = n - 1 - count(INTRO) - count(NEEDLE.format(key=40716)) - count(QUESTION)  # filler tokens
    prefix = p.key_start - 1 - count(INTRO)
    assert 0 <= prefix <= budget and abs(prefix - depth * budget) <= longest_sentence
    assert tok.decode(p.input_ids[p.key_start :]).startswith(" The pass key is 40716")
    assert p.answer_ids == tok(" 40716", add_special_tokens=False)["input_ids"]


def test_passkey_errors_and_scoring(reference):
    _, tok = reference
    with pytest.raises(ValueError, match="at least"):
        build_passkey(tok, 10, 0.5, 1)
    with pytest.raises(ValueError, match=r"`depth` must be in \[0, 1\]"):
        build_passkey(tok, 256, 1.5, 1)
    assert first_integer(" 40716. Remember") == 40716
    assert first_integer("The pass key is 123 or 456") == 123
    assert first_integer("no digits") is None


def _train_tiny(out: Path) -> dict:
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "train_reference_model.py"), "--tiny", "--out", str(out)],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return json.loads((out / "metrics.json").read_text())


def test_training_script_smoke_and_determinism(tmp_path):
    a = _train_tiny(tmp_path / "a")
    tok_cfg = json.loads((tmp_path / "a" / "tokenizer_config.json").read_text())
    assert tok_cfg["tokenizer_class"] == "PreTrainedTokenizerFast"  # loadable by transformers 4.x and 5.x
    for name in ("model.safetensors", "tokenizer.json", "README.md", "loss_curve.png", "training_log.csv"):
        assert (tmp_path / "a" / name).stat().st_size > 0
    b = _train_tiny(tmp_path / "b")
    a.pop("train_minutes"), b.pop("train_minutes")  # wall time is the one thing allowed to differ
    assert a == b  # same seed, same metrics to the last digit
    ta = (tmp_path / "a" / "model.safetensors").read_bytes()
    assert ta == (tmp_path / "b" / "model.safetensors").read_bytes()


@pytest.mark.core
@pytest.mark.skipif(int(transformers.__version__.split(".")[0]) >= 5, reason="transformers 5 has proportional RoPE")
def test_nope_and_prope_references_are_refused_clearly_on_transformers_4():
    for name in ("reference:nope", "reference:prope"):
        with pytest.raises(ValueError, match=f"{name} uses transformers' proportional RoPE, which transformers 4"):
            hls.load(name)


def test_a_reference_model_without_weights_names_the_training_script(tmp_path, monkeypatch):
    monkeypatch.setitem(REFERENCE_MODELS, "reference:ssmax", tmp_path)
    with pytest.raises(FileNotFoundError, match="not in this installation .*train_reference_variants.sh"):
        hls.load("reference:ssmax")
