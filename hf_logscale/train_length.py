"""The training length L of a checkpoint, and where it comes from.

First match wins:

1. a curated table of known checkpoint families (``known_models.toml``) with their documented native length and
   its public source: several published configs state another length (Qwen3 40960 for a native 32768, Qwen2 and
   Qwen2.5 base 131072 for 32768, Mistral 7B v0.1 32768 for 8192);
2. the rope type: ``llama3`` and ``longrope`` mean the model was trained at the extended length
   (``max_position_embeddings``); ``yarn`` / ``dynamic`` / ``linear`` added to a config extend a shorter trained
   length (``original_max_position_embeddings`` where the config states it);
3. for a model read from a GGUF file, the file's ``<architecture>.context_length`` (transformers reads it into
   ``max_position_embeddings``; the loader records the file in ``config.gguf_file``);
4. ``max_position_embeddings`` — a guess, announced by one warning that names ``--train-len``.
"""

from __future__ import annotations

import functools
import re
import sys
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import UserError
from .rope import rope_params

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["TrainLength", "resolve_train_len", "known_models", "KNOWN_MODELS_FILE"]

KNOWN_MODELS_FILE = Path(__file__).resolve().parent / "known_models.toml"
_TRAINED_LONG = ("llama3", "longrope")  # rope types of models trained at the extended length
_EXTENSIONS = ("yarn", "dynamic", "linear")  # rope types added on top of a shorter trained length


@dataclass(frozen=True)
class TrainLength:
    """L in tokens, a human-readable source, and whether it is only a guess."""

    value: int
    source: str
    guessed: bool = False

    def __str__(self) -> str:
        return f"{self.value} ({self.source})"


@functools.cache
def known_models() -> tuple[dict[str, Any], ...]:
    """The curated table, validated once per process."""
    entries = tomllib.loads(KNOWN_MODELS_FILE.read_text())["model"]
    for e in entries:
        missing = {"family", "model_type", "train_len", "source"} - set(e)
        if missing:
            raise UserError(f"{KNOWN_MODELS_FILE}: entry {e.get('family')!r} lacks {', '.join(sorted(missing))}")
        e["names"] = [re.compile(p, re.IGNORECASE) for p in e.get("names", [])]
    return tuple(entries)


def _field(config: Any, rope: Mapping[str, Any], key: str) -> Any:
    if key.startswith("rope."):
        return rope.get(key[5:])
    return getattr(config, key, None)


def _holds(value: Any, want: Any) -> bool:
    if isinstance(want, list):
        return any(_holds(value, w) for w in want)
    if want == "none":
        return value is None
    return value == want


def _match(config: Any, rope: Mapping[str, Any], name: str) -> dict[str, Any] | None:
    for entry in known_models():
        if config.model_type not in entry["model_type"]:
            continue
        if not all(_holds(_field(config, rope, k), v) for k, v in entry.get("config", {}).items()):
            continue
        if entry["names"] and not any(p.search(name) for p in entry["names"]):
            continue
        return entry
    return None


def resolve_train_len(config: Any, *, warn: bool = True) -> TrainLength:
    """L for a model config (see the module docstring for the rules); ``warn`` announces a guess. An image-text
    model's config (Gemma 3 4B and up) gives its language model's L; the name is the checkpoint's."""
    name = str(getattr(config, "_name_or_path", "") or "")
    gguf_file = getattr(config, "gguf_file", None)
    config = config.get_text_config() if hasattr(config, "get_text_config") else config
    rope = rope_params(config) or {}  # the global layers' with one dict per layer type
    mpe = getattr(config, "max_position_embeddings", None)
    entry = _match(config, rope, name)
    if entry is not None:
        value = entry["train_len"]
        if isinstance(value, str):  # the entry names the config field that holds L
            value = _field(config, rope, value)
        if value:
            return TrainLength(int(value), f"known checkpoint: {entry['family']} — {entry['source']}")
    kind = rope.get("rope_type") or rope.get("type") or "default"
    original = rope.get("original_max_position_embeddings")
    if kind in _TRAINED_LONG and mpe:
        return TrainLength(int(mpe), f"config max_position_embeddings ({kind} RoPE: trained at the extended length)")
    if kind in _EXTENSIONS and original:
        return TrainLength(int(original), f"config rope original_max_position_embeddings ({kind} extends it)")
    if kind == "dynamic" and mpe:  # transformers' dynamic NTK starts rescaling beyond max_position_embeddings
        return TrainLength(int(mpe), "config max_position_embeddings (dynamic NTK starts beyond it)")
    if gguf_file and mpe:
        return TrainLength(int(mpe), f"GGUF metadata {config.model_type}.context_length ({gguf_file})")
    if not mpe:
        raise UserError("the model config states no max_position_embeddings; pass the training length (--train-len N)")
    guess = TrainLength(int(mpe), "config max_position_embeddings, unverified", guessed=True)
    if warn:
        warnings.warn(
            f"L = {mpe} is a guess: the config's max_position_embeddings, for a checkpoint hf-logscale does not "
            "know; if the model was trained at another length, pass --train-len N (train_len=N in Python)",
            stacklevel=1,  # one warning per process and value, wherever L is asked for
        )
    return guess
