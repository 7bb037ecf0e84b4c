"""Reaching the Hugging Face hub: fail fast and once when there is no network, instead of huggingface_hub's
retries (33 "Retrying" lines over more than a minute). Offline mode (``HF_HUB_OFFLINE=1``) is never probed:
cached models and datasets load as they are."""

from __future__ import annotations

import functools
import os
import socket
from urllib.parse import urlparse

from .errors import UserError

__all__ = ["require_hub"]

_TIMEOUT_S = 5.0


def _offline() -> bool:
    """huggingface_hub's own reading of HF_HUB_OFFLINE (made when it was imported), or HF_DATASETS_OFFLINE."""
    from huggingface_hub import constants

    datasets_offline = os.environ.get("HF_DATASETS_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
    return bool(constants.HF_HUB_OFFLINE) or datasets_offline


@functools.cache
def _reachable(host: str, port: int) -> str | None:
    """None when a TCP connection to the hub opens within the timeout, else the reason."""
    try:
        with socket.create_connection((host, port), timeout=_TIMEOUT_S):
            return None
    except OSError as err:
        return str(err) or type(err).__name__


def require_hub(what: str) -> None:
    """Raise one clear ``UserError`` when ``what`` (a hub model or dataset) needs the hub and it cannot be reached."""
    if _offline():
        return
    url = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    host, port = url.hostname or "huggingface.co", url.port or (80 if url.scheme == "http" else 443)
    reason = _reachable(host, port)
    if reason is not None:
        raise UserError(
            f"no network: {what} needs {host}, which cannot be reached ({reason}); set HF_HUB_OFFLINE=1 to use a "
            "cached copy, or give a local folder"
        )
