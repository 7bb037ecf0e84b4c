"""What several commands do before their own work: place and load the model, announce it and its L."""

from __future__ import annotations

from typing import Any

from .render import err, out

__all__ = ["load_model", "results_store"]


def load_model(
    model_name: str | None,
    dtype: Any,
    device: str | None,
    attn: str | None,
    device_map: str | None = None,
    variant: Any = None,
) -> tuple[Any, Any, Any]:
    """``(model, tokenizer, L)`` with the device this process should use (one per process under ``accelerate
    launch``, where only the main process prints); L is a ``TrainLength`` (None when the config states none)."""
    from ..distributed import placement, process_group
    from ..models import load, train_length

    device = placement(device, device_map)
    if not process_group().main:
        out.quiet = err.quiet = True
    err.print(f"Loading {model_name or 'the reference model'} …")
    model, tok = load(
        model_name, variant=variant, dtype=dtype.value, device=device, device_map=device_map, attn_implementation=attn
    )
    train_len_info = train_length(model)
    err.print(f"L = {train_len_info or 'unknown'}")
    return model, tok, train_len_info


def results_store(out_dir: Any):
    """The results folder, locked by the process that writes it (the main one under a launcher); a run that fails
    before writing a record leaves no folder behind."""
    from ..distributed import process_group
    from ..results import ResultStore

    store = ResultStore(out_dir, lock=process_group().main)
    store.open()
    return store
