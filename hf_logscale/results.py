"""Result records: a JSONL store appended cell by cell (resume skips finished cells) and an atomic CSV summary.

A record is one metric of one cell: ``model, variant, task, dataset, length, depth, metric, value, status,
counts, seconds, seed, settings, versions, time`` (+ task extras such as the per-position ``curve``). A *cell* is
(model, variant, task, dataset, length, depth, settings). Its records are written as one block in one write,
flushed and synced, each carrying ``cell_records`` (the block's size), so a cell counts as finished only when its
whole block is on disk. A run killed mid-write, or stopped by a full disk, leaves at most one partial block; the
next run over the folder discards it (with a notice) and computes that cell again.

One process writes a folder at a time: the store holds an exclusive lock on ``.results.lock`` while open, and a
second run into the same folder is refused with the first one's process id.
"""

from __future__ import annotations

import csv
import errno
import hashlib
import io
import json
import os
import platform
import time
import warnings
from pathlib import Path
from typing import Any

import torch
import transformers

from ._version import __version__
from .errors import UserError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory locks; one run per folder is then the user's care
    fcntl = None

__all__ = [
    "RESULTS_FILE",
    "SUMMARY_FILE",
    "ResultStore",
    "StoreLocked",
    "cell_id",
    "check_out_dir",
    "make_dir",
    "versions",
    "write_atomic",
]

RESULTS_FILE = "results.jsonl"
SUMMARY_FILE = "summary.csv"
LOCK_FILE = ".results.lock"
CELL_FIELDS = ("model", "variant", "task", "dataset", "length", "depth", "settings")
SUMMARY_FIELDS = (
    "model",
    "variant",
    "task",
    "dataset",
    "length",
    "depth",
    "metric",
    "value",
    "status",
    "seconds",
    "settings",  # rows of runs with other settings (say --trials) into one folder stay apart
)


class StoreLocked(UserError):
    """Another process is writing to the same results folder."""


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
    """Write ``text`` to ``path`` through a temporary file and a rename: readers see the old or the new file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise _write_error(path, err) from None


def _write_error(path: Path, err: OSError) -> UserError:
    hint = "; free space and run the same command again to finish" if err.errno == errno.ENOSPC else ""
    error = UserError(f"cannot write {path}: {err.strerror or err}{hint}")
    error.errno = err.errno
    return error


_SYSTEM = (Path("/proc"), Path("/sys"), Path("/dev"))


def check_out_dir(path: str | os.PathLike, option: str = "--out") -> Path:
    """A folder to write into (created if missing): its own folder, not a file, not inside /proc, /sys or /dev,
    under a parent that is a folder. Raises ``ValueError`` saying what is wrong and what to give instead."""
    text = str(path)
    p = Path(text).expanduser()
    if not text.strip() or p.resolve() == Path.cwd().resolve():
        raise UserError(f"{option} must name a folder of its own (e.g. {option} results), got {text!r}")
    resolved = p.resolve()
    if any(resolved == s or s in resolved.parents for s in _SYSTEM):
        raise UserError(f"{option} {text!r} is inside a system folder (/proc, /sys, /dev); give a folder of your own")
    if p.exists() and not p.is_dir():
        raise UserError(f"{option} {text!r} is a file; give a folder (it is created if missing)")
    parent = next((a for a in p.absolute().parents if a.exists()), None)
    if parent is not None and not parent.is_dir():
        raise UserError(f"{option} {text!r}: {parent} is a file, not a folder; give a path under a folder")
    return p


def make_dir(path: Path, option: str = "--out") -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(
            f"{option} {str(path)!r}: cannot create it ({err.strerror}); give a folder you can write"
        ) from None


class ResultStore:
    """``out_dir/results.jsonl`` and ``out_dir/summary.csv``. Reading needs nothing; the first write (or ``with``,
    or ``open()``) creates the folder and takes its lock.

    ``lock``: hold the folder's lock (the writing process; other processes of a distributed run read nothing)."""

    def __init__(self, out_dir: str | os.PathLike, *, lock: bool = True):
        self.dir = Path(out_dir)
        self.path = self.dir / RESULTS_FILE
        self._lock = lock
        self._fd: int | None = None
        self._created = False
        self._opened = False

    # ---- opening, locking, closing ----------------------------------------------------------------------------

    def __enter__(self) -> ResultStore:
        self.open()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def open(self) -> None:
        """Create the folder if needed, take its lock, and drop what an interrupted run left half-written."""
        if self._opened:
            return
        check_out_dir(self.dir)
        if self._lock:
            self._created = not self.dir.exists()
            make_dir(self.dir)
            self._acquire()
            self._discard_partial()
        self._opened = True

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown: the OS releases the lock anyway
            pass

    def close(self) -> None:
        """Release the lock; a folder this store created and left empty is removed."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            (self.dir / LOCK_FILE).unlink(missing_ok=True)
        if self._created and self.dir.is_dir() and not any(self.dir.iterdir()):
            self.dir.rmdir()
        self._opened = False

    def _acquire(self) -> None:
        if fcntl is None:
            return
        path = self.dir / LOCK_FILE
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise StoreLocked(
                f"{self.dir} is being written by another run (pid {holder}); wait for it to finish or use another --out"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd

    # ---- reading ----------------------------------------------------------------------------------------------

    def _lines(self) -> tuple[list[dict[str, Any]], bool]:
        """Every parsed record, and whether the last line was torn (a write cut short)."""
        if not self.path.is_file():
            return [], False
        lines = self.path.read_text().splitlines()
        out = []
        for i, line in enumerate(lines):
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                if i != len(lines) - 1:  # only the last line can be torn by a kill or a full disk
                    raise UserError(f"{self.path}:{i + 1}: not a JSON record; the results file was edited") from None
                return out, True
        return out, False

    @staticmethod
    def _complete(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The records of whole cells, in file order: a block is whole when it holds ``cell_records`` consecutive
        records of its cell (records written before blocks were counted are whole). The first whole block of a
        cell is its result; a later whole block of the same cell (written by an older version that did not skip
        finished cells) is a duplicate and is not read twice."""
        whole: list[dict[str, Any]] = []
        done: set[Any] = set()
        i = 0
        while i < len(records):
            r = records[i]
            if "cell_records" not in r:
                whole.append(r)
                i += 1
                continue
            size, cell = r["cell_records"], r.get("cell")
            block = records[i : i + size]
            if len(block) == size and all(b.get("cell") == cell for b in block):
                if cell not in done:
                    whole += block
                    done.add(cell)
                i += size
            else:  # a partial block: the records up to the next cell's start
                i += next((k for k, b in enumerate(block) if b.get("cell") != cell), len(block))
        return whole

    def records(self) -> list[dict[str, Any]]:
        """The records of finished cells (reading takes no lock; a half-written block is not a finished cell)."""
        return self._complete(self._lines()[0])

    def finished(self) -> set[str]:
        return {r["cell"] for r in self.records() if "cell" in r}

    def _discard_partial(self) -> None:
        records, torn = self._lines()
        whole = self._complete(records)
        if not torn and len(whole) == len(records):
            return
        finished = {r.get("cell") for r in whole}
        partial = {r.get("cell") for r in records} - finished
        kept = {id(r) for r in whole}
        repeats = sum(1 for r in records if id(r) not in kept and r.get("cell") in finished)
        write_atomic(self.path, "".join(json.dumps(r, default=_jsonable) + "\n" for r in whole))
        if partial or torn:
            cells = f"{len(partial)} half-written cell(s)" if partial else "a torn last line"
            warnings.warn(
                f"{self.path}: discarded {cells} left by an interrupted run; they are computed again", stacklevel=3
            )
        if repeats:
            warnings.warn(
                f"{self.path}: dropped {repeats} repeated record(s) of finished cells (each cell keeps its first "
                "whole block)",
                stacklevel=3,
            )

    # ---- writing ----------------------------------------------------------------------------------------------

    def add(self, cell: dict[str, Any], metrics: dict[str, Any], **extra: Any) -> list[dict[str, Any]]:
        """Append the records of one finished cell, one per metric (``metrics`` maps name → value), as one block.
        A failed write (a full disk) is rolled back where possible and raised as ``UserError`` with the fix."""
        self.open()
        cid = cell_id(cell)
        existing = [r for r in self.records() if r.get("cell") == cid]
        if existing:  # finished before (another run of the same command): kept as it is, never written twice
            return existing
        base = {**{k: cell.get(k) for k in CELL_FIELDS}, "cell": cid, "time": time.time()}
        per_metric = extra.pop("per_metric", {})
        records = [
            {**base, "metric": m, "value": v, **extra, **per_metric.get(m, {}), "cell_records": len(metrics)}
            for m, v in metrics.items()
        ]
        text = "".join(json.dumps(r, default=_jsonable) + "\n" for r in records).encode()
        size = self._drop_torn_tail()
        try:
            self._append(text)
        except OSError as err:
            try:
                os.truncate(self.path, size)  # no partial block left behind (else the next run drops it)
            except OSError:
                pass
            raise _write_error(self.path, err) from None
        return records

    def _append(self, data: bytes) -> None:
        with self.path.open("ab") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())

    def _drop_torn_tail(self) -> int:
        """Cut a last line left without its newline (a write cut short); returns the file's size."""
        if not self.path.is_file():
            return 0
        size = self.path.stat().st_size
        with self.path.open("rb") as f:
            if size == 0 or (f.seek(size - 1), f.read(1))[1] == b"\n":
                return size
            end = f.seek(0) or f.read().rfind(b"\n") + 1
        os.truncate(self.path, end)
        return end

    def write_summary(self) -> Path:
        """``summary.csv``: one row per record, written atomically."""
        self.open()
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=SUMMARY_FIELDS, extrasaction="ignore")
        w.writeheader()
        for r in self.records():
            row = {k: r.get(k) for k in SUMMARY_FIELDS}
            row["settings"] = json.dumps(r.get("settings"), sort_keys=True, separators=(",", ":"), default=str)
            w.writerow(row)
        path = self.dir / SUMMARY_FILE
        write_atomic(path, buf.getvalue())
        return path


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "item"):
        return obj.item()
    return str(obj)
