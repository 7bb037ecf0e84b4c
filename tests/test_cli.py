"""The CLI: schemes table, patch summary + verification, --out, --merge, and one-line errors with exit code 2."""

import json
import re
import sys

import pytest
from conftest import make_model

import hf_logscale as hls
from hf_logscale.cli import main


def run(monkeypatch, capsys, *args):
    monkeypatch.setattr(sys, "argv", ["hf-logscale", *args])
    code = 0
    try:
        main()
    except SystemExit as e:
        code = e.code or 0
    cap = capsys.readouterr()
    return code, cap.out, cap.err


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny") / "model"
    make_model("qwen2_sw24", max_position_embeddings=64).save_pretrained(path)
    return str(path)


def test_help_lists_commands(monkeypatch, capsys):
    code, out, _ = run(monkeypatch, capsys, "--help")
    assert code == 0 and "schemes" in out and "patch" in out


def test_schemes_table(monkeypatch, capsys):
    code, out, _ = run(monkeypatch, capsys, "schemes")
    assert code == 0
    for name in hls.SCHEMES:
        assert name in out
    assert "max(1, ln n / ln L)" in out and "tau=1.0 (a number in [0, 100])" in out and "yarn-x4-logn" in out


@pytest.mark.filterwarnings("default:L = \\d+ is a guess")  # as the CLI runs: once per message
def test_patch_summary_and_verification(monkeypatch, capsys, tiny):
    code, out, err = run(monkeypatch, capsys, "patch", "--model", tiny, "--scheme", "critical", "--tau", "2")
    assert code == 0, out
    assert "Qwen2ForCausalLM" in out and "logscale_sdpa → sdpa" in out
    assert "64 (config max_position_embeddings, unverified)" in out
    # L is a guess for an unknown checkpoint: one warning line that names the option to fix it
    assert len(re.findall(r"Warning: L = 64 is a guess.*--train-len", err)) == 1, err
    assert "W = 24 on layers 1" in out
    assert "✓ verified" in out and "2 patched layers active: scaled queries seen" in out
    # n = 4L: critical τ=2 gives 1 + 2·ln4/ln64 = 5/3 on full layers; the windowed layer is capped at n = 24 → 1
    assert "1.6667" in out


def test_patch_variant_reports_compounding(monkeypatch, capsys, tiny):
    code, out, _ = run(
        monkeypatch, capsys, "patch", "--model", tiny, "--variant", "yarn:factor=4+logn", "--layers", "0"
    )
    assert code == 0, out
    assert "yarn, attention factor 1.1386" in out and "compound with s(n)" in out
    assert re.search(r"patched layers\s+0\s", out) and "1 patched layers active" in out


def test_patch_out_and_merge(monkeypatch, capsys, tiny, tmp_path):
    code, out, _ = run(
        monkeypatch, capsys, "patch", "--model", tiny, "--recipe", "qwen-logn", "--out", str(tmp_path / "p")
    )
    assert code == 0, out
    data = json.loads((tmp_path / "p" / "logscale_config.json").read_text())
    assert data["spec"] == "@qwen-logn" and data["variant"]["scale"]["train_len"] == 64
    code, out, _ = run(
        monkeypatch,
        capsys,
        "patch",
        "--model",
        str(tmp_path / "p"),
        "--variant",
        "ssmax",
        "--out",
        str(tmp_path / "m"),
        "--merge",
    )
    assert code == 0, out
    assert (tmp_path / "m" / "model.safetensors").exists() and "Wrote merged model" in out
    with pytest.warns(UserWarning):
        model, _ = hls.load(tmp_path / "m")
    assert hls.patch_state(model).scheme.name == "ssmax"


@pytest.mark.parametrize(
    "args, message",
    [
        (["patch", "--model", "{tiny}"], "give exactly one of --scheme, --variant or --recipe"),
        (["patch", "--model", "{tiny}", "--scheme", "lgn"], "unknown scheme 'lgn'. Did you mean logn?"),
        (
            ["patch", "--model", "{tiny}", "--scheme", "critical", "--tau", "-1"],
            "`tau` must be a finite number ≥ 0 and ≤ 100, got -1.0",
        ),
        (["patch", "--model", "{tiny}", "--variant", "yarn:factor=x"], "is not a number"),
        (["patch", "--model", "{tiny}", "--scheme", "logn", "--layers", "0,9"], "layer(s) 9 do not exist"),
        (["patch", "--model", "{tiny}", "--scheme", "logn", "--layers", "a"], "--layers must be comma-separated"),
        (["patch", "--model", "{tiny}", "--scheme", "logn", "--merge"], "--merge needs --out DIR"),
        (["patch", "--model", "/nonexistent/model", "--scheme", "logn"], "cannot load model"),
        (["patch", "--model", "{tiny}", "--recipe", "nope"], "unknown recipe 'nope'"),
        (["patch", "--model", "{tiny}", "--scheme", "logn", "--dtype", "float8"], "float8"),
    ],
)
def test_errors_are_one_line_with_exit_code_2(monkeypatch, capsys, tiny, args, message):
    code, out, err = run(monkeypatch, capsys, *[a.replace("{tiny}", tiny) for a in args])
    assert code == 2
    assert message in err
    assert "Traceback" not in err and "Traceback" not in out


def test_eval_ppl_passkey_needle_on_the_reference_model(monkeypatch, capsys, tmp_path):
    out_dir = str(tmp_path / "res")
    code, out, err = run(
        monkeypatch, capsys, "eval", "ppl", "--lengths", "1x,2x", "--max-documents", "2", "--out", out_dir
    )
    assert code == 0, err
    assert "ppl: reference · none" in out and "perplexity" in out and "ppl n=512" in err
    code, out, err = run(
        monkeypatch,
        capsys,
        "eval",
        "passkey",
        "--lengths",
        "256",
        "--depths",
        "0,1",
        "--trials",
        "2",
        "--variant",
        "logn",
        "--out",
        out_dir,
    )
    assert code == 0, err
    assert "passkey: reference · logn" in out and "acc @ 1" in out
    code, out, err = run(
        monkeypatch, capsys, "eval", "needle", "--lengths", "300", "--depths", "0.5", "--trials", "2", "--out", out_dir
    )
    assert code == 0, err
    records = [json.loads(x) for x in (tmp_path / "res" / "results.jsonl").read_text().splitlines()]
    assert {(r["task"], r["variant"]) for r in records} == {("ppl", "none"), ("passkey", "logn"), ("needle", "none")}
    assert (tmp_path / "res" / "summary.csv").read_text().count("\n") == len(records) + 1


@pytest.mark.parametrize(
    "args,message",
    [
        (["eval", "ppl", "--lengths", "12q"], "--lengths: '12q' is not a length"),
        (["eval", "ppl", "--stride", "8"], "`stride` goes with mode sliding (--mode sliding)"),
        (["eval", "ppl", "--dataset", "/no/such.jsonl"], "no such file or folder"),
        (["eval", "passkey", "--depths", "0.5,2"], "--depths must be"),
        (["eval", "ppl", "--lengths", "1x,1000x"], "no document of 'sample' is long enough for length 256000"),
        (["eval", "needle", "--lengths", "1000x"], "length 256000 needs more"),
        (["eval", "passkey", "--batch-size", "0"], "--batch-size must be"),
        (["eval", "passkey", "--variant", "logn:tau=1"], "tau"),
    ],
)
def test_eval_errors(monkeypatch, capsys, tmp_path, args, message):
    code, _, err = run(monkeypatch, capsys, *args, "--out", str(tmp_path))
    assert code == 2 and message in err and "Traceback" not in err
