"""``hf-logscale diagnose`` and ``hf-logscale calibrate``."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from ..errors import UserError
from .common import load_model
from .options import AttnOpt, DatasetOpt, DeviceOpt, DType, DTypeOpt, LengthsOpt, ModelOpt, VariantOpt
from .options import variants as parse_variants
from .render import Progress, err, out, print_table

__all__ = ["calibrate", "diagnose", "heads"]


class Objective(str, Enum):
    entropy = "entropy"
    nll = "nll"


WindowsOpt = Annotated[int, typer.Option(min=1, help="Windows of held-out text per length.")]


def diagnose(
    model_name: ModelOpt = None,
    variants: Annotated[str, typer.Option(help="Comma-separated variant specs or @recipes.")] = (
        "none,logn,critical:tau=0.5,critical:tau=2"
    ),
    lengths: LengthsOpt = "1x,2x,4x,8x,16x",
    windows: WindowsOpt = 2,
    dataset: DatasetOpt = "sample",
    gradients: Annotated[bool, typer.Option(help="Also measure gradient norms (a backward pass per window).")] = True,
    dtype: DTypeOpt = DType.auto,
    device: DeviceOpt = None,
    attn: AttnOpt = None,
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for diagnostics.json and figures.")] = Path(
        "diagnostics"
    ),
) -> None:
    """Attention entropy vs the number of keys per layer, token collapse and gradient flow vs length, per variant.

    Example: hf-logscale diagnose --variants none,logn,critical:tau=2
    """
    from ..data.sources import load_documents
    from ..diagnostics import run_diagnose
    from ..evaluation import parse_lengths

    chosen = parse_variants(variants)
    model, tok, train_len_info = load_model(model_name, dtype, device, attn)
    L = train_len_info.value if train_len_info else None
    lens = parse_lengths(lengths, L)
    texts = [d.text for d in load_documents(dataset)]
    with Progress() as bar:
        diag = run_diagnose(
            model,
            tok,
            texts,
            chosen,
            lens,
            windows=windows,
            gradients=gradients,
            advance=bar("variants × lengths", len(chosen) * len(lens)),
        )
    files = diag.write(out_dir, model_name or "reference", L)
    print_table(diag.entropy_table())
    out.print("Wrote " + ", ".join(str(f) for f in files))


def calibrate(
    model_name: ModelOpt = None,
    lengths: Annotated[str, typer.Option(help="Lengths to match (beyond L): 2x,4x or 512,1k.")] = "2x,4x,8x,16x",
    objective: Annotated[
        Objective,
        typer.Option(help="entropy: match attention entropy at L; nll: minimise held-out NLL at the lengths."),
    ] = Objective.entropy,
    per_layer: Annotated[bool, typer.Option(help="Also fit τ for each layer alone; the recipe gets them.")] = False,
    windows: WindowsOpt = 2,
    dataset: DatasetOpt = "sample",
    dtype: DTypeOpt = DType.auto,
    device: DeviceOpt = None,
    attn: AttnOpt = None,
    out_file: Annotated[Path, typer.Option("--out", help="Recipe file to write.")] = Path("calibrated.toml"),
) -> None:
    """Fit τ of the critical scheme beyond L (entropy matching or held-out NLL); print the objective over τ; write a
    recipe (with per-layer τ under --per-layer).

    Example: hf-logscale calibrate --objective nll --out calibrated.toml, then
    hf-logscale compare --variants none,logn,@calibrated.toml
    """
    from ..data.sources import load_documents
    from ..diagnostics import calibrate as fit
    from ..diagnostics import calibrate_layers, layers_table, token_windows
    from ..evaluation import parse_lengths
    from ..results import write_atomic

    if out_file.suffix != ".toml":
        raise UserError(f"--out must be a .toml recipe file, got {out_file}")
    model, tok, train_len_info = load_model(model_name, dtype, device, attn)
    if train_len_info is None:
        raise UserError("the model config states no training length; calibration needs one (--train-len)")
    L = train_len_info.value
    lens = parse_lengths(lengths, L)
    ws = token_windows(tok, [d.text for d in load_documents(dataset)], max(lens), windows)
    result = fit(model, ws, lens, L, objective=objective.value, log=err.print)
    print_table(result.curve_table())
    print_table(result.table(L))
    layers = calibrate_layers(model, ws, lens, L, objective=objective.value, log=err.print) if per_layer else []
    if layers:
        print_table(layers_table(layers))
    what = "attention entropy matched to L" if objective.value == "entropy" else "held-out NLL minimised"
    desc = f"critical τ calibrated on {model_name or 'the reference model'} at {list(result.lengths)}: {what}"
    write_atomic(out_file, result.recipe(L, desc, layers))
    out.print(f"Wrote {out_file}: use it as --recipe {out_file} or in --variants @{out_file}")


def heads(
    model_name: ModelOpt = None,
    variant: VariantOpt = None,
    windows: WindowsOpt = 8,
    rows: Annotated[int, typer.Option(min=1, help="Last rows of each window measured (they see about L keys).")] = 16,
    dataset: DatasetOpt = "sample",
    dtype: DTypeOpt = DType.auto,
    device: DeviceOpt = None,
    attn: AttnOpt = None,
    out_file: Annotated[Path, typer.Option("--out", help="CSV with one row per layer and head.")] = Path("heads.csv"),
    recipe: Annotated[
        Path | None, typer.Option(help="Also write a recipe (.toml): critical with each head's τ_c, zero-shot.")
    ] = None,
) -> None:
    """Per head at the training length L: the gap G between the top logit and the others, the top weight, and the
    critical slope τ_c = ln L / G that keeps the top key's log-odds constant as n grows (docs/theory.md).

    Example: hf-logscale heads --variant yarn:factor=16,attention_factor=1 --out heads.csv --recipe zero-shot.toml
    """
    import torch

    from ..data.sources import load_documents
    from ..diagnostics import head_gaps, heads_csv, heads_table, token_windows
    from ..results import write_atomic
    from ..variants import Variant, parse_variant

    if out_file.suffix != ".csv":
        raise UserError(f"--out must be a .csv file, got {out_file}")
    if recipe is not None and recipe.suffix != ".toml":
        raise UserError(f"--recipe must be a .toml file, got {recipe}")
    v = parse_variant(variant) if variant is not None else Variant()  # e.g. the RoPE frequencies to measure under
    model, tok, train_len_info = load_model(model_name, dtype, device, attn)
    if train_len_info is None:
        raise UserError("the model config states no training length; this needs one (--train-len)")
    L = train_len_info.value
    if rows >= L:
        raise UserError(f"--rows must be below L = {L}, got {rows}")
    ws = torch.cat(token_windows(tok, [d.text for d in load_documents(dataset)], L, windows))
    gaps = head_gaps(model, ws, rows=rows, variant=v)
    print_table(heads_table(gaps, L))
    write_atomic(out_file, heads_csv(gaps, L))
    out.print(f"Wrote {out_file} ({gaps.rows} rows per head, n ≈ {gaps.n:.0f} keys)")
    if recipe is not None:
        what = f"critical τ_c = ln L / G per head, measured at L = {L} on {model_name or 'the reference model'}"
        write_atomic(recipe, gaps.recipe(L, what + (f" under {v.label}" if v.rope else ""), v.rope))
        out.print(f"Wrote {recipe}: use it as --variants @{recipe} (no length beyond L was seen)")
