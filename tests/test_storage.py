"""The results folder as a storage system: cell-exact resume, a full disk, a second writer, kills at random
moments, and any text thrown at the variant grammar and the recipe loader."""

import errno
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import make_model
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from transformers import AutoTokenizer

import hf_logscale.variants as variants_mod
from hf_logscale.cli import main
from hf_logscale.models import REFERENCE_MODEL
from hf_logscale.results import ResultStore
from hf_logscale.variants import parse_variant

VOLATILE = ("time", "seconds")


def run(monkeypatch, capsys, *args) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["hf-logscale", *args])
    with pytest.raises(SystemExit) as e:
        main()
    return e.value.code, capsys.readouterr().err


def stable(path: Path) -> list[dict]:
    """The records of a results file without what changes between runs (timestamps, durations)."""
    records = [json.loads(line) for line in path.read_text().splitlines()]
    return sorted(({k: v for k, v in r.items() if k not in VOLATILE} for r in records), key=json.dumps)


def same_records(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert {k: v for k, v in x.items() if k != "value"} == {k: v for k, v in y.items() if k != "value"}
        assert x["value"] == pytest.approx(y["value"], rel=1e-6)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny") / "model"
    tok = AutoTokenizer.from_pretrained(REFERENCE_MODEL)
    make_model("llama", vocab_size=len(tok), max_position_embeddings=128).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def test_a_half_written_cell_is_discarded_and_computed_again(monkeypatch, capsys, tmp_path):
    """The reported case: a finished passkey run loses its last two lines (one metric block cut in half)."""
    args = ["eval", "passkey", "--lengths", "256", "--depths", "0,1", "--trials", "2"]
    code, _ = run(monkeypatch, capsys, *args, "--out", str(tmp_path / "full"))
    assert code == 0
    full = stable(tmp_path / "full" / "results.jsonl")
    cut = tmp_path / "cut"
    cut.mkdir()
    lines = (tmp_path / "full" / "results.jsonl").read_text().splitlines(keepends=True)
    (cut / "results.jsonl").write_text("".join(lines[:-2]))
    assert len(ResultStore(cut).records()) == 4  # the second depth's block is incomplete: not a finished cell
    code, err = run(monkeypatch, capsys, *args, "--out", str(cut))
    assert code == 0, err
    assert "discarded 1 half-written cell(s) left by an interrupted run" in err
    same_records(stable(cut / "results.jsonl"), full)


def test_a_full_disk_stops_the_run_and_the_next_run_finishes_it(monkeypatch, capsys, tmp_path, tiny_dir):
    args = ["eval", "ppl", "--model", str(tiny_dir), "--lengths", "32,64,128", "--max-documents", "2"]
    code, _ = run(monkeypatch, capsys, *args, "--out", str(tmp_path / "full"))
    assert code == 0
    writes = []
    real = ResultStore._append

    def full_disk(self, data):
        writes.append(len(data))
        if len(writes) == 2:  # the second cell: half of it reaches the disk, then ENOSPC
            with self.path.open("ab") as f:
                f.write(data[: len(data) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(self, data)

    monkeypatch.setattr(ResultStore, "_append", full_disk)
    out = tmp_path / "disk"
    code, err = run(monkeypatch, capsys, *args, "--out", str(out))
    assert code == 2
    assert [line for line in err.splitlines() if line.startswith("Error:")] == [
        f"Error: cannot write {out / 'results.jsonl'}: No space left on device; free space and run the same command "
        "again to finish"
    ]
    assert len(ResultStore(out).records()) == 3  # the first cell, whole; the half block was rolled back
    monkeypatch.setattr(ResultStore, "_append", real)
    code, err = run(monkeypatch, capsys, *args, "--out", str(out))
    assert code == 0, err
    same_records(stable(out / "results.jsonl"), stable(tmp_path / "full" / "results.jsonl"))


def test_a_second_run_into_the_same_folder_is_refused(monkeypatch, capsys, tmp_path):
    holder = ResultStore(tmp_path / "out")
    holder.open()  # a run in progress
    code, err = run(monkeypatch, capsys, "eval", "ppl", "--lengths", "256", "--out", str(tmp_path / "out"))
    assert code == 2
    assert f"is being written by another run (pid {os.getpid()}); wait for it to finish or use another --out" in err
    assert "Loading" not in err  # refused before the model loads
    holder.close()
    assert not (tmp_path / "out").exists()  # the holder made it and wrote nothing: no empty folder is left


# ---- kill -9 at random moments -----------------------------------------------------------------------------------

JOB = ["eval", "ppl", "--lengths", "16,24,32,48,64,96,128", "--max-documents", "3", "--batch-size", "1"]


def _job(tiny_dir: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "hf_logscale", *JOB, "--model", str(tiny_dir), "--out", str(out)]


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


@pytest.fixture(scope="module")
def uninterrupted(tiny_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("whole")
    t0 = time.monotonic()
    subprocess.run(_job(tiny_dir, out), env=_env(), check=True, capture_output=True)
    return stable(out / "results.jsonl"), time.monotonic() - t0


def _kill_and_resume(seed: int, tiny_dir: Path, tmp: Path, uninterrupted) -> dict:
    reference, duration = uninterrupted
    out = tmp / f"killed-{seed}"
    delay = random.Random(seed).uniform(0.3, 0.9) * duration  # somewhere in the middle of the work
    proc = subprocess.Popen(_job(tiny_dir, out), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = len(ResultStore(out).records()) if (out / "results.jsonl").exists() else 0
    subprocess.run(_job(tiny_dir, out), env=_env(), check=True, capture_output=True)
    got = stable(out / "results.jsonl")
    cells = lambda recs: [(r["length"], r["metric"]) for r in recs]  # noqa: E731
    same_records(got, reference)
    return {"records_at_kill": before, "lost": 0, "duplicated": len(cells(got)) - len(set(cells(got)))}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kill_minus_9_loses_duplicates_and_changes_nothing(seed, tiny_dir, tmp_path, uninterrupted):
    stats = _kill_and_resume(seed, tiny_dir, tmp_path, uninterrupted)
    assert stats["duplicated"] == 0


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(3, 23))
def test_kill_minus_9_many_times(seed, tiny_dir, tmp_path, uninterrupted):
    stats = _kill_and_resume(seed, tiny_dir, tmp_path, uninterrupted)
    assert stats["duplicated"] == 0


# ---- any text --------------------------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.text(alphabet=st.characters(codec="utf-8"), max_size=60)
    | st.from_regex(
        r"\A(yarn|dynamic|linear|llama3|longrope|logn|critical|ssmax|power|llama4|yarn-temp|none|@qwen-logn|@x)"
        r"(:[a-z_]{1,18}=[-+0-9.eEnaif]{0,8}(,[a-z_]{1,18}=[-+0-9.eEnaif]{0,8}){0,2})?"
        r"(\+(logn|critical|ssmax|power|llama4)(:[a-z_]{1,8}=[-0-9.e]{0,6})?)?\Z"
    )
)
def test_any_variant_text_parses_or_is_refused_with_a_value_error(text):
    try:
        v = parse_variant(text)
    except ValueError:
        return
    assert parse_variant(v.text).text == v.text  # what parses, round-trips


toml_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10, 10**6) | st.floats(allow_nan=True) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
recipe_keys = st.sampled_from(
    [
        "scheme",
        "tau",
        "train_len",
        "layers",
        "p",
        "a",
        "F",
        "f",
        "kind",
        "factor",
        "attention_factor",
        "original_max_position_embeddings",
        "short_factor",
        "x",
    ]
)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["description", "scale", "rope", "other"]),
        st.dictionaries(recipe_keys, toml_values, max_size=4) | toml_values,
        max_size=3,
    )
)
def test_any_recipe_table_loads_or_is_refused_with_a_value_error(data):
    try:
        variants_mod._recipe_from(data, Path("fuzz.toml"))
    except ValueError:
        pass


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_any_recipe_file_loads_or_is_refused_with_a_value_error(tmp_path, content):
    path = tmp_path / "fuzz.toml"
    path.write_bytes(content)
    try:
        variants_mod.load_recipe(str(path))
    except ValueError:
        pass
