"""Evaluators against independent float64 computations: perplexity (both modes), passkey and needle prompts and
scoring, the result store's resume, out-of-memory handling, and lengths parsing."""

import json
import math
import re
import sys

import pytest
import torch
from conftest import make_model
from reference import ref_scale, reference_logits
from test_zoo import shrunk
from transformers import AutoTokenizer

import hf_logscale as hls
from hf_logscale.data import sample_corpus
from hf_logscale.data.passkey import FILLER, INTRO, NEEDLE, QUESTION, first_integer
from hf_logscale.evaluation import (
    EvalSpec,
    Haystack,
    build_needle,
    evaluate,
    parse_depths,
    parse_lengths,
    passkey_prompts,
    perplexity,
    perplexity_windows,
    tokenize_documents,
)
from hf_logscale.evaluation import logprobs as logprobs_mod
from hf_logscale.evaluation import retrieval as retrieval_mod
from hf_logscale.evaluation.retrieval import score_prompts
from hf_logscale.models import REFERENCE_MODEL
from hf_logscale.results import ResultStore

perplexity_mod = sys.modules["hf_logscale.evaluation.perplexity"]  # the module (the package exports the function)


@pytest.fixture(scope="module")
def tok():
    return AutoTokenizer.from_pretrained(REFERENCE_MODEL)


@pytest.fixture(scope="module")
def texts():
    books = sample_corpus("heldout")
    return [books[0].text[:1200], books[1].text[:500], books[2].text[:90], books[3].text[:2000]]


@pytest.fixture(scope="module")
def docs(tok, texts):
    return tokenize_documents(tok, texts)


def tiny(tok, family="llama"):
    return make_model(family, vocab_size=len(tok), max_position_embeddings=64)


def ref_nll(model, bos, docs, n, mode, stride=None, scale=lambda k: 1.0):
    """Independent: float64 full logits, every scored token looked up one by one."""
    total, count = 0.0, 0
    m = n - 1
    for ids in docs:
        if len(ids) < m:
            continue
        starts = [0] if mode == "truncate" else list(range(0, len(ids) - m, stride)) + [len(ids) - m]
        seen = set()
        for s in starts:
            x = [bos] + ids[s : s + m]
            lp = torch.log_softmax(reference_logits(model, torch.tensor([x]), scale)[0], -1)
            for j in range(s, s + m):
                if j not in seen:
                    seen.add(j)
                    total -= lp[j - s, x[j - s + 1]].item()
                    count += 1
        assert seen == set(range(m if mode == "truncate" else len(ids)))
    return total / count, count


@pytest.mark.core
@pytest.mark.parametrize("mode,stride", [("truncate", None), ("sliding", 13), ("sliding", 32)])
@pytest.mark.parametrize("family", ["llama", "qwen2", "mistral_sw24"])
def test_perplexity_equals_float64_full_logits(tok, docs, monkeypatch, family, mode, stride):
    monkeypatch.setattr(logprobs_mod, "CHUNK_ELEMENTS", len(tok) * 7)  # several chunks per window
    model = tiny(tok, family)
    for n in (33, 64):
        r = perplexity(model, tok, docs, n, mode=mode, stride=stride, batch_size=3)
        want, count = ref_nll(model, tok.bos_token_id, docs, n, mode, stride)
        assert r.tokens == count
        assert r.nll == pytest.approx(want, rel=1e-5)
        assert r.documents + r.skipped == len(docs) and r.skipped == sum(len(d) < n - 1 for d in docs)


def test_perplexity_of_a_patched_model(tok, docs):
    model = tiny(tok)
    hls.patch(model, hls.LogScaleConfig(scheme="logn", train_len=16))
    r = perplexity(model, tok, docs, 48, mode="sliding", stride=20)
    want, _ = ref_nll(model, tok.bos_token_id, docs, 48, "sliding", 20, scale=ref_scale("logn", L=16))
    assert r.nll == pytest.approx(want, rel=1e-5)
    hls.unpatch(model)
    assert perplexity(model, tok, docs, 48, mode="sliding", stride=20).nll != pytest.approx(r.nll, rel=1e-4)


@pytest.mark.parametrize("stride", [1, 7, 31, 63])
def test_sliding_scores_every_token_exactly_once(docs, stride):
    for bos in (0, None):
        n = 64
        windows, spans, _ = perplexity_windows(docs, n, "sliding", stride, bos)
        head = 0 if bos is None else 1
        counts = {d: [0] * len(docs[d]) for d, _, _ in spans}
        for w in windows:
            assert len(w.ids) == n
            for t in range(w.score_from, n):
                j = w.start + t - head
                assert w.ids[t] == docs[w.doc][j]
                counts[w.doc][j] += 1
        for d, a, b in spans:
            assert counts[d][:a] == [0] * a and counts[d][a:b] == [1] * (b - a)  # without BOS token 0 is context
        assert all(len(docs[d]) >= n - head for d, _, _ in spans)


def test_bits_per_byte_and_curve(tok, texts, docs):
    model = tiny(tok)
    r = perplexity(model, tok, docs, 64, mode="sliding", stride=16)
    used = [texts[i] for i, d in enumerate(docs) if len(d) >= 63]
    assert r.bytes == sum(len(t.encode("utf-8")) for t in used)  # sliding mode with BOS scores all of the text
    assert r.bits_per_byte == pytest.approx(r.nll * r.tokens / math.log(2) / r.bytes, rel=1e-12)
    c = r.curve
    assert c["edges"][0] == 1 and c["edges"][-1] == 64 and sum(c["tokens"]) == r.tokens
    mean = sum(x * k for x, k in zip(c["nll"], c["tokens"], strict=True) if k) / r.tokens
    assert mean == pytest.approx(r.nll, rel=1e-12)


def test_no_document_long_enough(tok, docs):
    with pytest.raises(ValueError, match="no document has the 9999 tokens"):
        perplexity(tiny(tok), tok, docs, 10000)


def test_bad_mode_and_stride(docs):
    with pytest.raises(ValueError, match="mode"):
        perplexity_windows(docs, 32, "rolling")
    with pytest.raises(ValueError, match="stride"):
        perplexity_windows(docs, 32, "sliding", 40, 0)


def test_out_of_memory_halves_the_batch_then_records(tok, docs, tmp_path, monkeypatch):
    model = tiny(tok)
    want = perplexity(model, tok, docs, 32, batch_size=1).nll
    real = perplexity_mod.decoder_hidden

    def fussy(m, x, attention_mask=None):
        if x.shape[0] > 1 or x.shape[1] == 48:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 1 GiB")
        return real(m, x, attention_mask)

    monkeypatch.setattr(perplexity_mod, "decoder_hidden", fussy)
    assert perplexity(model, tok, docs, 32, batch_size=8).nll == pytest.approx(want, rel=1e-6)
    spec = EvalSpec(task="ppl", lengths=(32, 48, 64), dataset=str(tmp_path / "d"))
    (tmp_path / "d").mkdir()
    for i, d in enumerate(docs):
        (tmp_path / "d" / f"{i}.txt").write_text(tok.decode(d))
    records = evaluate(model, tok, spec, ResultStore(tmp_path / "out"), model_name="tiny")
    status = {r["length"]: r["status"] for r in records}
    assert status == {32: "ok", 48: "oom", 64: "ok"}
    assert all(r["value"] is None for r in records if r["length"] == 48)


def test_resume_skips_finished_cells(tok, docs, tmp_path, monkeypatch):
    model = tiny(tok)
    folder = tmp_path / "d"
    folder.mkdir()
    for i, d in enumerate(docs):
        (folder / f"{i}.txt").write_text(tok.decode(d))
    spec = EvalSpec(task="ppl", lengths=(24, 40), dataset=str(folder))
    store = ResultStore(tmp_path / "out")
    calls = []
    real = perplexity_mod.perplexity

    def killed_at_40(m, t, d, n, **kw):
        calls.append(n)
        if n == 40:
            raise KeyboardInterrupt  # the run is killed during the second cell
        return real(m, t, d, n, **kw)

    task_mod = sys.modules["hf_logscale.evaluation.tasks.ppl"]  # where the ppl task looks the evaluator up
    monkeypatch.setattr(task_mod, "perplexity", killed_at_40)
    with pytest.raises(KeyboardInterrupt):
        evaluate(model, tok, spec, store, model_name="tiny")
    with store.path.open("a") as f:
        f.write('{"cell": "torn')  # and a write was cut short
    assert {r["length"] for r in store.records()} == {24}
    monkeypatch.setattr(task_mod, "perplexity", lambda *a, **k: calls.append(a[3]) or real(*a, **k))
    records = evaluate(model, tok, spec, store, model_name="tiny")
    assert calls == [24, 40, 40]
    assert [(r["length"], r["metric"]) for r in records] == [
        (n, m) for n in (24, 40) for m in ("perplexity", "nll", "bits_per_byte")
    ]
    assert len(store.records()) == 6 and store.path.read_text().endswith("\n")
    rows = (tmp_path / "out" / "summary.csv").read_text().splitlines()
    assert rows[0].startswith("model,variant,task") and len(rows) == 7
    evaluate(model, tok, spec, store, model_name="tiny")  # everything finished: nothing recomputed
    assert calls == [24, 40, 40]
    other = EvalSpec(task="ppl", lengths=(24,), dataset=str(folder), mode="sliding", stride=8)
    evaluate(model, tok, other, store, model_name="tiny")  # other settings: a different cell
    assert calls == [24, 40, 40, 24]


def test_passkey_prompts_exact_length_and_depth(tok):
    sentence = max(len(tok(s, add_special_tokens=False)["input_ids"]) for s in FILLER)
    for n in (200, 256, 1000):
        for depth in (0.0, 0.3, 0.5, 1.0):
            prompts = passkey_prompts(tok, n, depth, 5, seed=3)
            assert prompts == passkey_prompts(tok, n, depth, 5, seed=3)  # deterministic
            for p in prompts:
                assert len(p.input_ids) == n
                text = tok.decode(p.input_ids[p.key_start :])
                assert text.startswith(f" The pass key is {p.key}.")
                fixed = [INTRO, NEEDLE.format(key=p.key), QUESTION]
                budget = n - 1 - sum(len(tok(t, add_special_tokens=False)["input_ids"]) for t in fixed)
                assert abs(p.depth - depth) * budget <= sentence  # the nearest sentence boundary


@pytest.mark.core
def test_scoring_matches_direct_computation():
    model, tok = hls.load()  # the reference model retrieves at its training length: hits and misses both occur
    prompts = passkey_prompts(tok, 256, 0.5, 6, seed=1) + passkey_prompts(tok, 512, 0.5, 0, seed=1)
    trials = score_prompts(
        model,
        tok,
        [p.input_ids for p in prompts],
        [p.answer_ids for p in prompts],
        [p.key for p in prompts],
        max_new_tokens=10,
    )
    for p, t in zip(prompts, trials, strict=True):
        x = torch.tensor([p.input_ids + p.answer_ids])
        lp = torch.log_softmax(reference_logits(model, x)[0], -1)
        n, k = len(p.input_ids), len(p.answer_ids)
        direct = sum(lp[n - 1 + j, p.answer_ids[j]].item() for j in range(k))
        assert t.tf_logprob == pytest.approx(direct, rel=1e-4, abs=1e-4)
        top1 = [lp[n - 1 + j].argmax().item() == p.answer_ids[j] for j in range(k)]
        assert t.tf_top1 == all(top1) and t.tf_token_top1 == pytest.approx(sum(top1) / k)
        seq = list(p.input_ids)  # greedy decoding, no cache, one full forward per token
        for _ in range(10):
            nxt = int(model(torch.tensor([seq])).logits[0, -1].argmax())
            seq.append(nxt)
            if nxt == tok.eos_token_id:
                break
        text = tok.decode(seq[n:], skip_special_tokens=True)
        # generation may stop once the first integer is complete: a prefix of the full answer, the same score
        assert text.startswith(t.generated) and first_integer(t.generated) == first_integer(text)
        assert t.hit == (first_integer(text) == p.key)
    assert any(t.hit for t in trials)


@pytest.mark.parametrize(
    "text,key,hit",
    [
        (" 40716.", 40716, True),
        (" 4071", 40716, False),
        (" 407160", 40716, False),
        ("The key is 40716", 40716, True),
        ("", 40716, False),
        (" forty", 40716, False),
    ],
)
def test_first_integer_scoring_on_crafted_outputs(text, key, hit):
    assert (first_integer(text) == key) is hit


def test_needle_placement(tok):
    hay = Haystack(tok, [d.text for d in sample_corpus("heldout")[:2]])
    longest = max(len(s) for s in hay.sentences)
    for n in (128, 512, 2048):
        for depth in (0.0, 0.1, 0.5, 0.9, 1.0):
            for offset in (0.0, 0.37, 0.999):
                p = build_needle(tok, hay, n, depth, 12345, offset)
                assert len(p.input_ids) == n
                needle = tok(" The pass key is 12345. Remember it. 12345 is the pass key.", add_special_tokens=False)
                assert p.input_ids[p.needle_start : p.needle_start + p.needle_len] == needle["input_ids"]
                before = tok.decode(p.input_ids[1 : p.needle_start])
                assert before == "" or re.search(r"[.!?]$", before)  # a sentence boundary
                budget = n - 1 - p.needle_len - len(tok(" What is the pass key? The pass key is")["input_ids"]) + 1
                assert abs(p.depth - depth) * budget <= longest
                assert tok.decode(p.input_ids[-10:]).endswith("The pass key is")
    with pytest.raises(ValueError, match="haystack corpus has"):
        build_needle(tok, Haystack(tok, ["Short text. Two sentences."]), 256, 0.5, 7)


def test_parse_lengths_and_depths():
    assert parse_lengths("256,1k,2K, 512") == (256, 512, 1024, 2048)
    assert parse_lengths("1x,2x,16x", train_len=256) == (256, 512, 4096)
    assert parse_lengths("0.5x", train_len=256) == (128,)
    for bad in ("12q", "1.5", "", "1x"):
        with pytest.raises(ValueError, match="--lengths"):
            parse_lengths(bad, train_len=None if bad == "1x" else 256)
    assert parse_depths("1,0,0.5") == (0.0, 0.5, 1.0)
    with pytest.raises(ValueError, match="--depths"):
        parse_depths("0.5,2")


def test_evaluate_passkey_and_needle_records(tok, tmp_path):
    model = tiny(tok)
    store = ResultStore(tmp_path)
    spec = EvalSpec(task="passkey", lengths=(160,), depths=(0.0, 1.0), trials=3)
    records = evaluate(model, tok, spec, store, model_name="tiny", variant="none")
    assert [(r["depth"], r["metric"]) for r in records] == [
        (d, m) for d in (0.0, 1.0) for m in ("accuracy", "tf_accuracy", "tf_token_accuracy", "tf_logprob")
    ]
    acc = [r for r in records if r["metric"] == "accuracy"]
    assert all(len(r["trials"]) == 3 and r["counts"] == {"trials": 3} for r in acc)
    assert all(r["value"] == sum(t["hit"] for t in r["trials"]) / 3 for r in acc)
    spec = EvalSpec(task="needle", lengths=(160,), depths=(0.5,), trials=2)
    records = evaluate(model, tok, spec, store, model_name="tiny", variant="none")
    assert {r["task"] for r in records} == {"needle"} and records[0]["dataset"] == "sample"
    lines = [json.loads(x) for x in store.path.read_text().splitlines()]
    assert {"versions", "seed", "seconds", "settings", "status"} <= set(lines[0])


@pytest.mark.core
def test_teacher_forcing_reuses_the_generation_cache(tok, monkeypatch):
    """Without sliding windows the answer's logits come from generate's cache cropped back to the prompt (one short
    forward pass), never from prefilling prompt + answer again (transformers 5 crops by a negative count only)."""

    def prefill_again(*args, **kwargs):
        raise AssertionError("the prompt was prefilled a second time")

    monkeypatch.setattr(retrieval_mod, "decoder_hidden", prefill_again)
    model = tiny(tok)
    prompts = passkey_prompts(tok, 120, 0.3, 3, seed=2)
    trials = score_prompts(
        model, tok, [p.input_ids for p in prompts], [p.answer_ids for p in prompts], [p.key for p in prompts]
    )
    assert len(trials) == 3 and all(len(p.answer_ids) > 1 for p in prompts)


@pytest.mark.parametrize("family", ["mistral_sw24", "qwen2_sw24", "qwen3"])
def test_teacher_forcing_on_other_families_and_sliding_windows(tok, family):
    """Sliding-window caches may refuse to be cropped: the scorer then re-runs prompt + answer; either way the
    teacher-forced log-probability equals a float64 full-logits computation."""
    model = make_model(family, vocab_size=len(tok), max_position_embeddings=64)
    prompts = passkey_prompts(tok, 120, 0.3, 3, seed=2)
    trials = score_prompts(
        model, tok, [p.input_ids for p in prompts], [p.answer_ids for p in prompts], [p.key for p in prompts]
    )
    for p, t in zip(prompts, trials, strict=True):
        lp = torch.log_softmax(reference_logits(model, torch.tensor([p.input_ids + p.answer_ids]))[0], -1)
        n = len(p.input_ids)
        direct = sum(lp[n - 1 + j, a].item() for j, a in enumerate(p.answer_ids))
        assert t.tf_logprob == pytest.approx(direct, rel=1e-4, abs=1e-4)


@pytest.mark.parametrize("name", ["google/gemma-2-2b-it", "ibm-granite/granite-3.3-8b-instruct", "cohere2_sw8"])
@torch.no_grad()
def test_chunked_loss_applies_the_family_head(name):
    """Gemma's final soft-cap, Granite's logits_scaling and Cohere's logit_scale: the chunked loss scores the logits
    the model's own forward returns."""
    model = shrunk(name) if "/" in name else make_model(name)
    x = torch.randint(1, 256, (2, 40), generator=torch.Generator().manual_seed(3))
    logits = model(x).logits.float()
    want = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), x[:, 1:].flatten(), reduction="none")
    got = logprobs_mod.next_token_nll(model, logprobs_mod.decoder_hidden(model, x)[:, :-1], x[:, 1:])
    assert got.flatten() == pytest.approx(want.tolist(), rel=1e-5, abs=1e-5)
    plain = torch.nn.functional.cross_entropy(  # the head alone would score other numbers: the test can tell
        model.get_output_embeddings()(logprobs_mod.decoder_hidden(model, x)[:, :-1]).float().flatten(0, 1),
        x[:, 1:].flatten(),
        reduction="none",
    )
    assert (plain - want).abs().max() > 1e-3
