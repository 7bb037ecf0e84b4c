"""GGUF checkpoints (llama.cpp's single-file format): read through transformers' ``gguf_file=`` loader, which
dequantises every tensor to float. Before that loader runs, ``check_gguf`` reads the file's header with the
``gguf`` package and turns what would fail deep inside it into one clear error: a file that is not GGUF or is cut
short, an architecture transformers cannot read from GGUF, a quantisation type ``gguf`` cannot dequantise.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

from .errors import UserError

__all__ = ["GGUFInfo", "check_gguf", "is_gguf"]

_MAGIC = b"GGUF"
_INSTALL = 'pip install "hf-logscale[gguf]" (or pip install gguf)'


@dataclass(frozen=True)
class GGUFInfo:
    path: Path
    architecture: str
    context_length: int | None  # `<architecture>.context_length`: the length the file's author states
    name: str | None  # `general.name`
    quantisations: tuple[str, ...]  # tensor types present, e.g. ("F32", "Q4_1", "Q8_0")


def is_gguf(path: str | Path) -> bool:
    """Whether ``path`` names a GGUF file (by its suffix; the content is checked by ``check_gguf``)."""
    return str(path).lower().endswith(".gguf")


def check_gguf(path: str | Path) -> GGUFInfo:
    """Read the header and tensor table of a ``.gguf`` file; raise ``ValueError`` (or ``ImportError`` without the
    ``gguf`` package) with the fix when transformers could not load it."""
    path = Path(path)
    if importlib.util.find_spec("gguf") is None:
        raise ImportError(f"reading {path.name} needs the `gguf` package, which is not installed: {_INSTALL}")
    import gguf
    from gguf.quants import _type_traits  # the types gguf can dequantise besides F32/F16

    with path.open("rb") as f:
        head = f.read(4)
    if head != _MAGIC:
        raise UserError(f"{path} is not a GGUF file (it starts with {head!r}, not {_MAGIC!r})")
    try:
        reader = gguf.GGUFReader(path)
    except Exception as err:  # numpy views past the end of a cut file, bad offsets: the file is incomplete
        raise UserError(
            f"{path} is truncated or corrupt ({type(err).__name__}: {err}); download or extract it again"
        ) from None
    arch = _text(reader, "general.architecture")
    if arch is None:
        raise UserError(f"{path} states no general.architecture; it is not a model checkpoint")
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

    if arch not in GGUF_SUPPORTED_ARCHITECTURES:
        import transformers

        readable = ", ".join(a for a in GGUF_SUPPORTED_ARCHITECTURES if a not in ("general", "tokenizer"))
        raise UserError(
            f"{path.name}: architecture {arch!r} cannot be read from GGUF by transformers {transformers.__version__} "
            f"(it reads {readable}); convert the checkpoint to safetensors, or upgrade transformers"
        )
    kinds = sorted({t.tensor_type for t in reader.tensors}, key=lambda q: q.value)
    dense = (gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16)
    missing = [q.name for q in kinds if q not in dense and q not in _type_traits]
    if missing:
        raise UserError(
            f"{path.name}: quantisation type {', '.join(missing)} cannot be dequantised by gguf {version('gguf')}; "
            "use a file quantised as F32, F16, Q8_0, Q4_K or another type gguf reads, or upgrade gguf"
        )
    length = reader.fields.get(f"{arch}.context_length")
    return GGUFInfo(
        path=path,
        architecture=arch,
        context_length=int(length.contents()) if length is not None else None,
        name=_text(reader, "general.name"),
        quantisations=tuple(q.name for q in kinds),
    )


def _text(reader, key: str) -> str | None:
    field = reader.fields.get(key)
    return None if field is None else str(field.contents())
