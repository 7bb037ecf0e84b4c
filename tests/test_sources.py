"""Text sources on small local fixtures, offline: the sample corpus, hub datasets by name (local folders laid out
like the hub repos), .txt / folder / .jsonl / .parquet files, and the errors for bad input."""

import json

import pytest

from hf_logscale.data import sources
from hf_logscale.data.sample import HELD_OUT
from hf_logscale.data.sources import HubDataset, load_documents


def test_sample_defaults_to_the_held_out_books():
    docs = load_documents("sample")
    assert [d.name for d in docs] == list(HELD_OUT)
    assert len(load_documents("sample", split="train")) == 61
    assert len(load_documents("sample", limit=2)) == 2


def test_text_file_and_folder(tmp_path):
    (tmp_path / "a.txt").write_text("First document.")
    (tmp_path / "b.txt").write_text("Second document.")
    assert [d.text for d in load_documents(str(tmp_path / "a.txt"))] == ["First document."]
    assert [d.text for d in load_documents(str(tmp_path))] == ["First document.", "Second document."]


def test_jsonl_with_field(tmp_path):
    path = tmp_path / "docs.jsonl"
    path.write_text("".join(json.dumps({"body": f"doc {i}", "id": i}) + "\n" for i in range(3)))
    assert [d.text for d in load_documents(str(path), field="body")] == ["doc 0", "doc 1", "doc 2"]
    with pytest.raises(ValueError, match="no field 'text'.*body, id.*--field"):
        load_documents(str(path))


def test_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "docs.parquet"
    pq.write_table(pa.table({"text": ["alpha", "beta"], "n": [1, 2]}), path)
    assert [d.text for d in load_documents(str(path))] == ["alpha", "beta"]


@pytest.mark.parametrize(
    "name,field,extra",
    [("pg19", "text", {"short_book_title": "x", "url": "u"}), ("govreport", "report", {"summary": "s", "id": "i"})],
)
def test_hub_datasets_by_name_on_local_fixtures(tmp_path, monkeypatch, name, field, extra):
    """The real loading code (datasets.load_dataset on the spec's path, split and field), pointed at a local
    folder with the hub repo's layout and schema."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    repo = tmp_path / name
    (repo / "data").mkdir(parents=True)
    rows = {field: ["long report one", "long report two"], **{k: [v, v] for k, v in extra.items()}}
    pq.write_table(pa.table(rows), repo / "data" / "test-00000-of-00001.parquet")
    pq.write_table(pa.table({k: v[:1] for k, v in rows.items()}), repo / "data" / "train-00000-of-00001.parquet")
    spec = sources.HUB_DATASETS[name]
    monkeypatch.setitem(sources.HUB_DATASETS, name, HubDataset(str(repo), field=spec.field, split=spec.split))
    assert spec.field == field and spec.split == "test"
    assert [d.text for d in load_documents(name)] == ["long report one", "long report two"]
    assert [d.text for d in load_documents(f"hub:{repo}", field=field, split="train")] == ["long report one"]


def test_proof_pile_reads_its_jsonl_shards(tmp_path, monkeypatch):
    import gzip

    repo = tmp_path / "proof-pile"
    (repo / "test").mkdir(parents=True)
    with gzip.open(repo / "test" / "proofpile_test.jsonl.gz", "wt") as f:
        f.write(json.dumps({"text": "Theorem. Proof.", "meta": {"set_name": "arxiv"}}) + "\n")
    spec = sources.HUB_DATASETS["proof-pile"]
    monkeypatch.setitem(sources.HUB_DATASETS, "proof-pile", HubDataset(str(repo), data_files=spec.data_files))
    assert [d.text for d in load_documents("proof-pile")] == ["Theorem. Proof."]


def test_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file or folder; use sample, pg19"):
        load_documents(str(tmp_path / "missing.jsonl"))
    (tmp_path / "x.csv").write_text("a,b")
    with pytest.raises(ValueError, match="unsupported file type '.csv'"):
        load_documents(str(tmp_path / "x.csv"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no .txt files"):
        load_documents(str(tmp_path / "empty"))
    with pytest.raises(ValueError, match="cannot load dataset 'hub:nobody/nothing'"):
        load_documents("hub:nobody/nothing")  # offline: a clear error, not a traceback
    with pytest.raises(ValueError, match="limit"):
        load_documents("sample", limit=0)
