"""Text sources and prompt templates: the offline sample corpus and the shared passkey template."""

from .passkey import build_passkey, first_integer
from .sample import HELD_OUT, Document, sample_corpus

__all__ = ["Document", "HELD_OUT", "build_passkey", "first_integer", "sample_corpus"]
