"""Text sources for evaluation: the offline sample corpus, hub datasets by name, and local files.

``load_documents(source)`` returns a list of ``Document`` for:

- ``sample`` — the held-out books of the offline sample corpus (the default; no network);
- ``pg19``, ``proof-pile``, ``govreport`` — the long-document test sets of the YaRN evaluations, through
  ``datasets.load_dataset`` (cached copies load offline with ``HF_DATASETS_OFFLINE=1``);
- ``hub:owner/name[:config]`` — any hub dataset, with ``field`` and ``split``;
- a local ``.txt`` file (one document) or folder of ``.txt`` files, a ``.jsonl`` file (one document per line, text
  in ``field``) or a ``.parquet`` file (text in column ``field``), all through the ``datasets`` builders.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import checks
from ..errors import UserError
from ..hub import require_hub
from .sample import Document, sample_corpus

__all__ = ["HUB_DATASETS", "HubDataset", "load_documents", "source_names"]


@dataclass(frozen=True)
class HubDataset:
    path: str  # hub id, or a local folder laid out the same way
    field: str = "text"
    split: str = "test"
    name: str | None = None  # dataset config
    data_files: dict[str, str] | None = None
    about: str = ""


HUB_DATASETS: dict[str, HubDataset] = {
    "pg19": HubDataset("emozilla/pg19-test", about="PG-19 test split: 100 books (parquet)"),
    "proof-pile": HubDataset(
        "hoskinson-center/proof-pile",
        data_files={"test": "test/*.jsonl.gz"},
        about="Proof-pile test split (arXiv math, formal proofs; YaRN's perplexity set)",
    ),
    "govreport": HubDataset(
        "ccdv/govreport-summarization", field="report", about="GovReport test split: government reports"
    ),
}


def source_names() -> list[str]:
    return ["sample", *HUB_DATASETS, "hub:owner/name[:config]", "PATH (.txt, folder of .txt, .jsonl, .parquet)"]


def load_documents(
    source: str = "sample", *, field: str | None = None, split: str | None = None, limit: int | None = None
) -> list[Document]:
    """Documents of ``source`` (see the module docstring), in the source's order, at most ``limit`` of them."""
    if not isinstance(source, str) or not source.strip():
        raise UserError(f"`dataset` must be sample, a hub dataset name or a path, got {source!r}")
    if limit is not None:
        checks.integer("limit", limit, minimum=1)
    if source == "sample":
        docs = sample_corpus(split or "heldout")
    elif source in HUB_DATASETS:
        spec = HUB_DATASETS[source]
        docs = _from_hub(spec.path, spec.name, split or spec.split, field or spec.field, spec.data_files, source)
    elif source.startswith("hub:"):
        repo, _, config = source[4:].partition(":")
        if not repo:
            raise UserError("a hub source is written hub:owner/name or hub:owner/name:config")
        docs = _from_hub(repo, config or None, split or "test", field or "text", None, source)
    else:
        docs = _from_path(Path(source).expanduser(), field or "text", split)
    docs = [d for d in docs if d.text.strip()]
    if not docs:
        raise UserError(f"dataset {source!r} holds no text (every document is empty)")
    return docs[:limit] if limit else docs


def _from_hub(path, name, split, field, data_files, label) -> list[Document]:
    if not Path(path).exists():
        require_hub(f"dataset {label!r}")
    datasets = _datasets()
    try:
        ds = datasets.load_dataset(path, name, split=split, data_files=data_files)
    except Exception as err:  # offline and not cached, no such repo or split: one clear line
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"cannot load dataset {label!r} ({path}, split {split!r}): {first}") from err
    return _documents(ds, field, label)


def _from_path(path: Path, field: str, split: str | None) -> list[Document]:
    if not path.exists():
        raise FileNotFoundError(
            f"dataset {str(path)!r}: no such file or folder; use sample, {', '.join(HUB_DATASETS)}, "
            "hub:owner/name, or a .txt/.jsonl/.parquet path"
        )
    if not path.is_dir() and not path.is_file():  # a FIFO would block forever, a device never ends
        raise UserError(
            f"dataset {str(path)!r} is not a regular file (a pipe, device or socket); give a .txt, .jsonl or "
            ".parquet file or a folder of .txt files"
        )
    if path.is_dir():
        files = sorted(path.glob("*.txt"))
        if not files:
            raise UserError(f"dataset folder {str(path)!r} holds no .txt files")
        return [Document(f.stem, _read_text(f)) for f in files]
    suffix = "".join(path.suffixes[-2:]) if path.suffix == ".gz" else path.suffix
    if suffix == ".txt":
        return [Document(path.stem, _read_text(path))]
    builder = {".jsonl": "json", ".json": "json", ".jsonl.gz": "json", ".parquet": "parquet"}.get(suffix)
    if builder is None:
        raise UserError(f"dataset {str(path)!r}: unsupported file type {suffix!r}; use .txt, .jsonl or .parquet")
    try:
        ds = _datasets().load_dataset(builder, data_files=str(path), split="train")
    except Exception as err:
        raise UserError(f"cannot read {str(path)!r} as {builder}: {str(err).strip().splitlines()[0]}") from err
    return _documents(ds, field, str(path))


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise UserError(f"dataset file {str(path)!r} is not UTF-8 text ({err.reason} at byte {err.start})") from None


def _documents(ds: Any, field: str, label: str) -> list[Document]:
    if field not in ds.column_names:
        raise UserError(
            f"dataset {label!r} has no field {field!r}; its fields are {', '.join(ds.column_names)} (pass --field)"
        )
    return [Document(f"{label}[{i}]", str(text)) for i, text in enumerate(ds[field]) if text]


def _datasets():
    import datasets

    datasets.disable_progress_bars()
    return datasets
