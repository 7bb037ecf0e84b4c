"""What several commands do before their own work: place and load the model, announce it and its L."""

from __future__ import annotations

from typing import Any

from .render import err, out

__all__ = ["load_model", "results_store"]


def load_model(
    model: str | None,
    dtype: Any,
    device: str | None,
    attn: str | None,
    device_map: str | None = None,
    variant: Any = None,
) -> tuple[Any, Any, Any]:
    """``(model, tokenizer, L)`` with the device this process should use (one per process under ``accelerate
    launch``, where only the main process prints); L is a ``TrainLength`` (None when the config states none)."""
    from ..distributed import current, placement
    from ..models import load, train_length

    device = placement(device, device_map)
    if not current().main:
        out.quiet = err.quiet = True
    err.print(f"Loading {model or 'the reference model'} …")
    net, tok = load(
        model, variant=variant, dtype=dtype.value, device=device, device_map=device_map, attn_implementation=attn
    )
    tl = train_length(net)
    err.print(f"L = {tl or 'unknown'}")
    return net, tok, tl


def results_store(out_dir: Any):
    """The results folder, locked by the process that writes it (the main one under a launcher); a run that fails
    before writing a record leaves no folder behind."""
    from ..distributed import current
    from ..results import ResultStore

    store = ResultStore(out_dir, lock=current().main)
    store.open()
    return store
