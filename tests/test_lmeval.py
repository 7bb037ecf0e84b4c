"""lm-eval integration on the reference model, offline: the registered model type applies variants, the project's
tasks give the same numbers as the project's evaluators, and `hf-logscale lm-eval` stores results and reports bad
input clearly."""

import json
import sys

import pytest

lm_eval = pytest.importorskip("lm_eval", reason="the optional lm-eval dependency (pip install 'hf-logscale[lmeval]')")

from lm_eval.api.registry import get_model  # noqa: E402
from lm_eval.tasks import TaskManager  # noqa: E402

import hf_logscale as hls  # noqa: E402
from hf_logscale.data import sample_corpus  # noqa: E402
from hf_logscale.evaluation import passkey, perplexity, tokenize_documents  # noqa: E402
from hf_logscale.lmeval import LogScaleLM, task_path  # noqa: E402

META = {"max_seq_lengths": [256, 512], "depths": [0.0, 0.5, 1.0], "trials": 4, "seed": 0}


@pytest.fixture(scope="module")
def base():
    return LogScaleLM(batch_size=4)


def evaluate(lm, tasks, meta=META):
    manager = TaskManager(include_path=str(task_path()), metadata=meta)
    return lm_eval.simple_evaluate(model=lm, tasks=tasks, task_manager=manager)["results"]


def test_registered_and_variant_round_trips_through_model_args():
    assert get_model("hf-logscale") is LogScaleLM
    lm = LogScaleLM.create_from_arg_string("variant=yarn:factor=4;attention_factor=1+logn,batch_size=2")
    assert lm.variant.text == hls.parse_variant("yarn:factor=4,attention_factor=1+logn").text
    report = hls.describe(lm.model)
    assert report.rope.startswith("yarn") and "logn" in report.variant
    assert LogScaleLM.create_from_arg_string("variant=none").variant is None
    assert not hls.is_patched(LogScaleLM.create_from_arg_string("").model)


def test_ppl_and_passkey_equal_the_projects_evaluators(base):
    results = evaluate(base, ["logscale_ppl", "logscale_passkey"])
    model, tok = base.model, base.tokenizer
    docs = tokenize_documents(tok, [d.text for d in sample_corpus("heldout")])
    for n in (256, 512):
        ours = perplexity(model, tok, docs, n, mode="truncate").perplexity
        assert results["logscale_ppl"][f"{n},none"] == pytest.approx(ours, rel=1e-4)
        hits = [passkey(model, tok, n, d, trials=4, seed=0).accuracy for d in META["depths"]]
        assert results["logscale_passkey"][f"{n},none"] == sum(hits) / len(hits)  # exactly the same items and answers


def test_patched_and_unpatched_scores_differ_at_long_context(base):
    meta = {**META, "max_seq_lengths": [1024]}
    plain = evaluate(base, ["logscale_ppl"], meta)["logscale_ppl"]["1024,none"]
    yarn = evaluate(LogScaleLM(variant="yarn:factor=4", batch_size=4), ["logscale_ppl"], meta)
    assert yarn["logscale_ppl"]["1024,none"] < 0.9 * plain  # YaRN ×4 repairs the unscaled model at 4× L


def test_needle_task_runs(base):
    res = evaluate(base, ["logscale_needle"], {**META, "max_seq_lengths": [300], "trials": 2})["logscale_needle"]
    assert 0.0 <= res["acc,none"] <= 1.0 and res["sample_len"] == 6


def run_cli(monkeypatch, capsys, *args):
    from hf_logscale.cli import main

    monkeypatch.setattr(sys, "argv", ["hf-logscale", "lm-eval", *args])
    with pytest.raises(SystemExit) as e:
        main()
    return e.value.code, capsys.readouterr()


def test_cli_writes_results(monkeypatch, capsys, tmp_path):
    code, cap = run_cli(
        monkeypatch, capsys, "--tasks", "logscale_ppl", "--lengths", "1x", "--variant", "logn", "--out", str(tmp_path)
    )
    assert code == 0, cap.err
    records = [json.loads(x) for x in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert {(r["task"], r["length"], r["metric"], r["variant"]) for r in records} == {
        ("lm-eval:logscale_ppl", None, "perplexity", "logn"),
        ("lm-eval:logscale_ppl", 256, "perplexity", "logn"),
    }
    assert {(r["train_len"], r["train_len_source"].split(" — ")[0]) for r in records} == {
        (256, "known checkpoint: hf-logscale reference models")
    }
    assert "results" in json.loads((tmp_path / "lm_eval_results.json").read_text())
    code, cap = run_cli(monkeypatch, capsys, "--task-path")
    assert code == 0 and cap.out.strip().endswith("eval_tasks")


@pytest.mark.parametrize(
    "args,message",
    [
        (["--tasks", "logscale_pasky"], "unknown lm-eval task 'logscale_pasky'. Did you mean logscale_passkey"),
        (["--tasks", "logscale_ppl", "--model-args", "no_such_arg=1"], "bad --model-args"),
        (["--tasks", "logscale_ppl", "--model-args", "oops"], "--model-args: expected key=value"),
        (["--tasks", "logscale_ppl", "--metadata", "{trials: 3}"], "--metadata must be a JSON object"),
        (["--tasks", "logscale_ppl", "--variant", "logn:tau=2"], "tau"),
        ([], "--tasks is required"),
    ],
)
def test_cli_errors(monkeypatch, capsys, tmp_path, args, message):
    code, cap = run_cli(monkeypatch, capsys, *args, "--out", str(tmp_path))
    assert code == 2 and message in cap.err and "Traceback" not in cap.err
