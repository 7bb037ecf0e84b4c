"""compare: the variant list grammar, the default matrix, a small matrix end to end (records, CSV, report, figures,
resume), the model restored after the matrix, and a two-process run equal to a one-process run."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import make_model
from transformers import AutoTokenizer

import hf_logscale as hls
from hf_logscale import compare as compare_mod
from hf_logscale.cli import main
from hf_logscale.compare import default_variants, run_compare, write_outputs, yarn_factor
from hf_logscale.evaluation import EvalSpec, get_task
from hf_logscale.models import REFERENCE_MODEL
from hf_logscale.results import ResultStore
from hf_logscale.variants import parse_variant, split_variants

SETTINGS = dict(depths=(0.0, 1.0), trials=2, seed=0, dataset="sample", mode="truncate", max_documents=2)


def variants(*specs):
    return [parse_variant(s) for s in specs]


def test_split_variants():
    assert split_variants("none,logn,yarn:factor=4,attention_factor=1+logn,critical:tau=0.5,@qwen-logn") == [
        "none",
        "logn",
        "yarn:factor=4,attention_factor=1+logn",
        "critical:tau=0.5",
        "@qwen-logn",
    ]
    assert split_variants(" logn , ssmax ") == ["logn", "ssmax"]
    with pytest.raises(ValueError, match="empty"):
        split_variants(" , ")


def test_default_matrix_covers_the_largest_length():
    assert yarn_factor(4096, 256) == 16 and yarn_factor(300, 256) == 2 and yarn_factor(256, 256) == 2
    v = [x.label for x in default_variants(4096, 256)]
    sweep = [f"yarn:attention_factor=1.0,factor=16.0+critical:tau={t}" for t in ("0.5", "1", "2", "4")]
    assert v == [
        "none",
        "logn",
        "yarn:factor=16.0",
        "@qwen-dynamic-logn",
        "yarn:attention_factor=1.0,factor=16.0",
        *sweep,
    ]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    """A tiny Llama with the reference tokenizer, saved like a checkpoint."""
    path = tmp_path_factory.mktemp("tiny") / "model"
    tok = AutoTokenizer.from_pretrained(REFERENCE_MODEL)
    make_model("llama", vocab_size=len(tok), max_position_embeddings=128).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def test_matrix_end_to_end_and_resume(tiny_dir, tmp_path, monkeypatch):
    out = tmp_path / "cmp"
    model, tok = hls.load(str(tiny_dir))
    chosen = variants("none", "yarn:factor=2")
    specs = [EvalSpec.taking(t, (128, 256), SETTINGS) for t in ("ppl", "passkey")]
    calls = []
    real = compare_mod.evaluate

    def interrupted(model, tok, spec, store, **kw):
        calls.append((kw["variant"], spec.task))
        if kw["variant"] == "yarn:factor=2.0" and spec.task == "passkey" and len(calls) < 5:
            raise KeyboardInterrupt  # killed in the second variant's second task
        return real(model, tok, spec, store, **kw)

    monkeypatch.setattr(compare_mod, "evaluate", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_compare(model, tok, chosen, specs, ResultStore(out), model_name="tiny")
    finished = {(r["variant"], r["task"]) for r in ResultStore(out).records()}
    assert finished == {("none", "ppl"), ("none", "passkey"), ("yarn:factor=2.0", "ppl")}

    cells = []
    monkeypatch.setattr(compare_mod, "evaluate", real)
    passkey = type(get_task("passkey"))
    real_cell = passkey.run
    monkeypatch.setattr(
        passkey,
        "run",
        lambda self, m, t, spec, d, n, depth, *a: (
            cells.append((spec.task, n, depth)) or real_cell(self, m, t, spec, d, n, depth, *a)
        ),
    )
    result = run_compare(model, tok, chosen, specs, ResultStore(out), model_name="tiny")
    assert cells == [("passkey", n, d) for n in (128, 256) for d in (0.0, 1.0)]  # only what was missing
    assert result.variants == ["none", "yarn:factor=2.0"]
    recs = ResultStore(out).records()
    assert len(recs) == 2 * (2 * 3 + 2 * 2 * 4)  # variants × (ppl lengths × 3 metrics + passkey cells × 4 metrics)
    assert {(r["train_len"], r["train_len_source"]) for r in recs} == {
        (128, "config max_position_embeddings, unverified")
    }
    rows = (out / "summary.csv").read_text().splitlines()
    assert len(rows) == len(recs) + 1
    report = write_outputs(result, out, model_name="tiny", train_len=128, settings=SETTINGS, command="test")
    text = report.read_text()
    for needle in (
        "## Settings",
        "## Reading",
        "## Perplexity",
        "## Passkey retrieval",
        "`yarn:factor=2.0`",
        "training length L = 128 (config max_position_embeddings, unverified)",
        "ppl_vs_length.png",
        "passkey_heatmap.png",
        "position_loss.png",
        "transformers",
    ):
        assert needle in text
    for png in ("ppl_vs_length.png", "passkey_heatmap.png", "position_loss.png"):
        data = (out / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_model_is_restored_after_the_matrix(tiny_dir, tmp_path, monkeypatch):
    model, tok = hls.load(str(tiny_dir))
    x = torch.randint(3, 4000, (1, 40), generator=torch.Generator().manual_seed(0))
    before = model(x).logits
    seen = []
    spec = EvalSpec(task="passkey", lengths=(96,), depths=(0.5,), trials=1)
    with pytest.raises(ValueError, match="a passkey prompt needs at least 90 tokens; got length 64"):
        run_compare(
            model,
            tok,
            variants("none"),
            [EvalSpec(task="passkey", lengths=(64,))],
            ResultStore(tmp_path),
            model_name="t",
        )
    real = compare_mod.evaluate

    def spy(m, *a, **k):
        seen.append((k["variant"], m.config.max_position_embeddings, hls.is_patched(m)))
        return real(m, *a, **k)

    monkeypatch.setattr(compare_mod, "evaluate", spy)
    run_compare(model, tok, variants("none", "yarn:factor=4", "logn"), [spec], ResultStore(tmp_path), model_name="t")
    assert seen == [("none", 128, False), ("yarn:factor=4.0", 512, True), ("logn", 128, True)]
    seen.clear()  # a variant is applied once for all its tasks
    run_compare(
        model,
        tok,
        variants("logn"),
        [spec, spec_ppl := EvalSpec("ppl", (64,), max_documents=1)],
        ResultStore(tmp_path / "two"),
        model_name="t",
    )
    assert seen == [("logn", 128, True), ("logn", 128, True)] and spec_ppl.task == "ppl"
    assert not hls.is_patched(model) and torch.equal(model(x).logits, before)
    with pytest.raises(ValueError, match="listed twice"):
        run_compare(model, tok, variants("logn", "logn"), [spec], ResultStore(tmp_path), model_name="t")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--tasks", "perplexity"], "unknown task 'perplexity'"),
        (["--variants", "none,yarnn:factor=2"], "unknown variant part 'yarnn'"),
        (["--variants", ""], "--variants is empty"),
    ],
)
def test_bad_tasks_and_variants_fail_before_loading(monkeypatch, capsys, tmp_path, args, message):
    monkeypatch.setattr(sys, "argv", ["hf-logscale", "compare", *args, "--out", str(tmp_path / "o")])
    with pytest.raises(SystemExit) as e:
        main()
    err = capsys.readouterr().err
    assert e.value.code == 2 and message in err and "Loading" not in err


def test_two_processes_equal_one(tiny_dir, tmp_path):
    args = [
        "compare",
        "--model",
        str(tiny_dir),
        "--variants",
        "none,logn",
        "--tasks",
        "ppl,passkey,needle",
        "--lengths",
        "1x,2x",
        "--depths",
        "0,0.5,1",
        "--trials",
        "3",
        "--max-documents",
        "3",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    # `--multi_gpu` is accelerate's multi-process launcher; on a machine without GPUs the processes use gloo on CPU
    launcher = [
        str(Path(sys.executable).parent / "accelerate"),
        "launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "-m",
        "hf_logscale",
    ]
    one = subprocess.run(
        [sys.executable, "-m", "hf_logscale", *args, "--out", str(tmp_path / "one")],
        env=env,
        capture_output=True,
        text=True,
    )
    assert one.returncode == 0, one.stderr[-3000:]
    two = subprocess.run([*launcher, *args, "--out", str(tmp_path / "two")], env=env, capture_output=True, text=True)
    assert two.returncode == 0, two.stderr[-3000:]

    def load(name):
        recs = [json.loads(x) for x in (tmp_path / name / "results.jsonl").read_text().splitlines()]
        return {(r["variant"], r["task"], r["length"], r["depth"], r["metric"]): r for r in recs}

    a, b = load("one"), load("two")
    assert a.keys() == b.keys() and len(a) == 2 * (2 * 3 + 2 * 2 * 3 * 4)
    # floats summed or computed in other batch shapes differ in the last bits (1e-7 relative measured with torch
    # 2.14.1); everything discrete (keys, generated text, hits, counts) must be identical
    for k, r in a.items():
        assert b[k]["processes"] == 2 and r["processes"] == 1
        assert b[k]["value"] == pytest.approx(r["value"], rel=1e-6) and b[k].get("counts") == r.get("counts")
        for t1, t2 in zip(r.get("trials") or [], b[k].get("trials") or [], strict=True):
            assert t2["tf_logprob"] == pytest.approx(t1["tf_logprob"], rel=1e-6, abs=1e-6)
            assert {**t2, "tf_logprob": 0} == {**t1, "tf_logprob": 0}


def test_a_cell_does_not_depend_on_what_ran_before_it(tiny_dir, tmp_path):
    """Dynamic NTK keeps the frequencies of the longest sequence it saw: every cell starts from the variant's own
    rotary state, so a passkey cell at L gives the same scores after a perplexity cell at 4 L as alone."""
    model, tok = hls.load(str(tiny_dir))
    L = model.config.max_position_embeddings
    passkey = EvalSpec("passkey", (L,), depths=(0.5,), trials=2)
    longer = EvalSpec("ppl", (4 * L,), max_documents=1)
    dynamic = variants("dynamic:factor=4")
    alone = run_compare(model, tok, dynamic, [passkey], ResultStore(tmp_path / "a"), model_name="t").records
    after = run_compare(model, tok, dynamic, [longer, passkey], ResultStore(tmp_path / "b"), model_name="t").records
    after = [r for r in after if r["task"] == "passkey"]
    assert [r["metric"] for r in alone] == [r["metric"] for r in after]
    for a, b in zip(alone, after, strict=True):
        assert a["value"] == pytest.approx(b["value"], rel=1e-6, abs=1e-6), a["metric"]
