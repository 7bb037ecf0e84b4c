"""The lm-eval folder is a results store like the others (lock, one block per cell, resume, nothing whole
discarded), and remote code runs only on an explicit true."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from test_storage import _env, run, same_records, stable, tiny_dir  # noqa: F401  (tiny_dir is a fixture)

from hf_logscale.results import ResultStore

JOB = ["lm-eval", "--tasks", "logscale_passkey,logscale_ppl", "--lengths", "96,128", "--limit", "2"]


def _lines(path):
    return (path / "results.jsonl").read_text().splitlines()


def test_two_runs_write_each_cell_once_and_eval_keeps_them(monkeypatch, capsys, tmp_path, tiny_dir):  # noqa: F811
    out = tmp_path / "X"
    code, err = run(monkeypatch, capsys, *JOB, "--model", str(tiny_dir), "--out", str(out))
    assert code == 0, err
    first = _lines(out)
    assert len(first) > 0
    code, err = run(monkeypatch, capsys, *JOB, "--model", str(tiny_dir), "--out", str(out))
    assert code == 0, err
    assert "finished before, not run again: logscale_passkey, logscale_ppl" in err
    assert _lines(out) == first  # nothing appended twice
    summary = (out / "summary.csv").read_text().splitlines()
    assert len(summary) == 1 + len(first)
    code, err = run(monkeypatch, capsys, "eval", "ppl", "--model", str(tiny_dir), "--lengths", "96", "--out", str(out))
    assert code == 0, err
    assert "discarded" not in err and _lines(out)[: len(first)] == first


def test_a_folder_with_repeated_blocks_keeps_each_cell_once(tmp_path):
    """A folder written twice by an older version (two whole blocks per cell) loses nothing."""
    store = ResultStore(tmp_path)
    cell = {"model": "m", "variant": "none", "task": "t", "dataset": "d", "length": 1, "depth": None, "settings": {}}
    store.add(cell, {"a": 1.0, "b": 2.0})
    store.close()
    text = (tmp_path / "results.jsonl").read_text()
    (tmp_path / "results.jsonl").write_text(text + text)
    with pytest.warns(UserWarning, match=r"dropped 2 repeated record\(s\) of finished cells"):
        again = ResultStore(tmp_path)
        again.open()
    assert [r["metric"] for r in again.records()] == ["a", "b"]
    assert again.add(cell, {"a": 9.0, "b": 9.0})[0]["value"] == 1.0  # a finished cell is never written again
    again.close()


def test_a_second_lmeval_run_into_the_folder_is_refused(monkeypatch, capsys, tmp_path, tiny_dir):  # noqa: F811
    holder = ResultStore(tmp_path / "X")
    holder.open()
    code, err = run(monkeypatch, capsys, *JOB, "--model", str(tiny_dir), "--out", str(tmp_path / "X"))
    assert code == 2 and f"is being written by another run (pid {os.getpid()})" in err
    holder.close()


def _job(tiny_dir, out):  # noqa: F811
    return [sys.executable, "-m", "hf_logscale", *JOB, "--model", str(tiny_dir), "--out", str(out)]


@pytest.mark.parametrize(
    "fraction", [0.7, pytest.param(0.4, marks=pytest.mark.slow), pytest.param(0.95, marks=pytest.mark.slow)]
)
def test_kill_minus_9_then_the_same_command_gives_the_uninterrupted_records(tiny_dir, tmp_path, fraction):  # noqa: F811
    whole = tmp_path / "whole"
    t0 = time.monotonic()
    subprocess.run(_job(tiny_dir, whole), env=_env(), check=True, capture_output=True)
    duration = time.monotonic() - t0
    out = tmp_path / "killed"
    proc = subprocess.Popen(_job(tiny_dir, out), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(fraction * duration)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    subprocess.run(_job(tiny_dir, out), env=_env(), check=True, capture_output=True)
    same_records(stable(out / "results.jsonl"), stable(whole / "results.jsonl"))


def _remote_code_folder(tiny_dir, tmp_path):  # noqa: F811
    """The tiny model with an auto_map naming a local .py that leaves a marker when imported."""
    import shutil

    folder = tmp_path / "remote"
    shutil.copytree(tiny_dir, folder)
    marker = tmp_path / "remote-code-ran"
    (folder / "evil.py").write_text(
        f"open({str(marker)!r}, 'w').write('ran')\n"
        "from transformers import LlamaConfig, LlamaForCausalLM\n"
        "class EvilConfig(LlamaConfig):\n    pass\n"
        "class EvilModel(LlamaForCausalLM):\n    config_class = EvilConfig\n"
    )
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "evil.EvilConfig", "AutoModelForCausalLM": "evil.EvilModel"}
    (folder / "config.json").write_text(json.dumps(config))
    return folder, marker


@pytest.mark.parametrize("word", ["no", *(pytest.param(w, marks=pytest.mark.slow) for w in ("false", "0", "No"))])
def test_remote_code_never_runs_unless_explicitly_true(monkeypatch, capsys, tmp_path, tiny_dir, word):  # noqa: F811
    folder, marker = _remote_code_folder(tiny_dir, tmp_path)
    args = ("--tasks", "logscale_passkey", "--lengths", "96", "--limit", "1", "--out", str(tmp_path / "o"))
    code, err = run(
        monkeypatch, capsys, "lm-eval", "--model", str(folder), *args, "--model-args", f"trust_remote_code={word}"
    )
    assert not marker.exists(), "remote code ran"
    assert code == 0, err


def test_the_remote_code_fixture_does_run_when_trusted(tmp_path, tiny_dir):  # noqa: F811
    """The control: the same folder with trust_remote_code=True imports its .py (so the test above can fail)."""
    import hf_logscale as hls

    folder, marker = _remote_code_folder(tiny_dir, tmp_path)
    hls.load(folder, trust_remote_code=True)
    assert marker.exists()


@pytest.mark.parametrize(
    "model_args, message",
    [
        (
            "trust_remote_code=maybe",
            "model arg `trust_remote_code` must be true or false (also 1/0, yes/no), got 'maybe'",
        ),
        ("trust_remote_code=2", "must be true or false"),
        ("max_length=-5", "model arg `max_length` must be a positive integer, got -5"),
        ("batch_size=abc", "model arg `batch_size` must be a positive integer or auto, got 'abc'"),
        ("variant=logn", "give `variant` as --variant, not in --model-args"),
        ("pretrained=x", "give `pretrained` as --model, not in --model-args"),
    ],
)
def test_model_args_are_parsed_strictly(monkeypatch, capsys, tmp_path, model_args, message):
    code, err = run(monkeypatch, capsys, *JOB, "--model-args", model_args, "--out", str(tmp_path / "o"))
    assert code == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()
