"""Adding a task is one class: a toy task defined here runs through evaluate, compare, the report, the figures
and the CLI's tables without any change to the library."""

import math
import sys

import pytest
import torch

from hf_logscale import checks
from hf_logscale.cli import main
from hf_logscale.compare import run_compare, write_outputs
from hf_logscale.evaluation import (
    TASKS,
    CellResult,
    EvalSpec,
    Figure,
    Metric,
    Setting,
    Task,
    evaluate,
    get_task,
    register_task,
)
from hf_logscale.models import load
from hf_logscale.results import ResultStore
from hf_logscale.tables import Table
from hf_logscale.variants import parse_variant


class Toy(Task):
    """Mean next-token NLL of a seeded random token sequence of n tokens: cheap, deterministic, uses the model."""

    name = "toy"
    title = "Toy loss"
    description = "NLL of random tokens"
    metrics = (Metric("loss", "loss", False, "{:.3f}"),)
    headline = "loss"
    settings = (Setting("seed", 0, checks.integer),)
    figures = (Figure("lines", "loss", "Toy loss vs length", "toy_loss.png"),)
    report_tables = (("loss", "Mean NLL of random tokens:"),)

    def prepare(self, tokenizer, spec, lengths):
        return len(tokenizer)

    def items(self, data, spec, length):
        return 1

    def run(self, model, tokenizer, spec, data, length, depth, batch_size, advance):
        g = torch.Generator().manual_seed(spec.seed + length)
        x = torch.randint(0, data, (1, length), generator=g)
        with torch.no_grad():
            loss = float(model(x, labels=x).loss)
        if advance:
            advance(1)
        return CellResult({"loss": loss}, {"tokens": length - 1})

    def table(self, records, train_len):
        rows = [[str(r["length"]), f"{r['value']:.3f}"] for r in records]
        return Table(f"toy: {records[0]['variant']}", ["n", "loss"], rows, text_columns=0)

    def findings(self, records, variants, train_len):
        return [f"The toy task saw {len(records)} records."]


@pytest.fixture
def toy():
    register_task(Toy)
    yield TASKS["toy"]
    del TASKS["toy"]


def test_a_new_task_runs_through_evaluate_compare_report_and_cli(toy, tmp_path, monkeypatch, capsys):
    model, tok = load()
    store = ResultStore(tmp_path / "eval")
    records = evaluate(model, tok, EvalSpec(task="toy", lengths=(64, 128)), store, model_name="reference")
    assert [(r["task"], r["length"], r["metric"]) for r in records] == [("toy", 64, "loss"), ("toy", 128, "loss")]
    assert all(r["value"] > math.log(len(tok)) / 2 for r in records)  # random tokens: near-uniform loss
    assert (store.dir / "summary.csv").read_text().count("\nreference,none,toy,toy,") == 2  # task, data label

    out = tmp_path / "cmp"
    variants = [parse_variant(v) for v in ("none", "logn")]
    specs = [EvalSpec(task="toy", lengths=(256, 512)), EvalSpec(task="ppl", lengths=(256,), max_documents=1)]
    result = run_compare(model, tok, variants, specs, ResultStore(out), model_name="reference")
    report = write_outputs(result, out, model_name="reference", train_len=256, settings={}, command="test")
    text = report.read_text()
    assert "## Toy loss" in text and "Mean NLL of random tokens:" in text and "The toy task saw" in text
    assert "| `logn` |" in text and "toy_loss.png" in text and (out / "toy_loss.png").stat().st_size > 10_000
    assert "## Perplexity" in text  # the built-in tasks are untouched

    monkeypatch.setattr(
        sys,
        "argv",
        [
            "hf-logscale",
            "compare",
            "--tasks",
            "toy",
            "--variants",
            "none,logn",
            "--lengths",
            "1x,2x",
            "--out",
            str(out),
        ],
    )
    with pytest.raises(SystemExit) as e:
        main()
    cap = capsys.readouterr()
    assert e.value.code == 0, cap.err
    assert "Toy loss: loss" in cap.out and "logn" in cap.out  # compare's summary table, from the registry


def test_unknown_task_names_the_registered_ones():
    names = ", ".join(TASKS)
    with pytest.raises(ValueError, match=rf"unknown task 'pkey'. Did you mean passkey\? Tasks: {names}"):
        get_task("pkey")
    with pytest.raises(ValueError, match="unknown task"):
        EvalSpec(task="nope", lengths=(8,))
