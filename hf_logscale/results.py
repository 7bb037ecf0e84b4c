"""Result records: a JSONL store appended cell by cell (resume skips finished cells) and an atomic CSV summary.

A record is one metric of one cell: ``model, variant, task, dataset, length, depth, metric, value, status,
counts, seconds, seed, settings, versions, time`` (+ task extras such as the per-position ``curve``). A *cell* is
(model, variant, task, dataset, length, depth, settings); its records are written together, flushed and synced,
so a killed run leaves whole cells and at most one torn last line, which is ignored.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import torch
import transformers

from ._version import __version__

__all__ = ["RESULTS_FILE", "SUMMARY_FILE", "ResultStore", "cell_id", "versions", "write_atomic"]

RESULTS_FILE = "results.jsonl"
SUMMARY_FILE = "summary.csv"
CELL_FIELDS = ("model", "variant", "task", "dataset", "length", "depth", "settings")
SUMMARY_FIELDS = ("model", "variant", "task", "dataset", "length", "depth", "metric", "value", "status", "seconds")


def versions() -> dict[str, str]:
    return {
        "hf_logscale": __version__,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
    }


def cell_id(fields: dict[str, Any]) -> str:
    key = json.dumps([fields.get(k) for k in CELL_FIELDS], sort_keys=True, default=str)
    return hashlib.sha1(key.encode()).hexdigest()[:16]


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class ResultStore:
    """``out_dir/results.jsonl`` and ``out_dir/summary.csv``."""

    def __init__(self, out_dir: str | os.PathLike):
        self.dir = Path(out_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / RESULTS_FILE

    def records(self) -> list[dict[str, Any]]:
        if not self.path.is_file():
            return []
        out = []
        lines = self.path.read_text().splitlines()
        for i, line in enumerate(lines):
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                if i != len(lines) - 1:  # only the last line can be torn by a kill
                    raise ValueError(f"{self.path}:{i + 1}: not a JSON record") from None
        return out

    def finished(self) -> set[str]:
        return {r["cell"] for r in self.records() if "cell" in r}

    def add(self, cell: dict[str, Any], metrics: dict[str, Any], **extra: Any) -> list[dict[str, Any]]:
        """Append the records of one finished cell: one per metric (``metrics`` maps name → value)."""
        base = {**{k: cell.get(k) for k in CELL_FIELDS}, "cell": cell_id(cell), "time": time.time()}
        per_metric = extra.pop("per_metric", {})
        records = [{**base, "metric": m, "value": v, **extra, **per_metric.get(m, {})} for m, v in metrics.items()]
        text = "".join(json.dumps(r, default=_jsonable) + "\n" for r in records)
        self._drop_torn_tail()
        with self.path.open("a") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        return records

    def _drop_torn_tail(self) -> None:
        """A run killed mid-write leaves a last line without its newline: cut it before appending."""
        if not self.path.is_file():
            return
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            with self.path.open("r+b") as f:
                f.truncate(data.rfind(b"\n") + 1)

    def write_summary(self) -> Path:
        """``summary.csv``: one row per record, written atomically."""
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=SUMMARY_FIELDS, extrasaction="ignore")
        w.writeheader()
        for r in self.records():
            w.writerow({k: r.get(k) for k in SUMMARY_FIELDS})
        path = self.dir / SUMMARY_FILE
        write_atomic(path, buf.getvalue())
        return path


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "item"):
        return obj.item()
    return str(obj)
