"""Options shared by the commands, declared once, and the text → type conversions the commands need."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from ..errors import UserError

__all__ = [
    "AttnOpt",
    "BatchOpt",
    "DType",
    "DTypeOpt",
    "DatasetOpt",
    "DepthsOpt",
    "DeviceMapOpt",
    "DeviceOpt",
    "FieldOpt",
    "LengthsOpt",
    "MaxDocumentsOpt",
    "MaxNewTokensOpt",
    "Mode",
    "ModeOpt",
    "ModelOpt",
    "OutOpt",
    "SETTING_OPTIONS",
    "SeedOpt",
    "SplitOpt",
    "StrideOpt",
    "TrialsOpt",
    "VariantOpt",
    "parse_batch_size",
    "parse_layers",
    "task_settings",
    "variants",
]


class DType(str, Enum):
    auto = "auto"
    float32 = "float32"
    bfloat16 = "bfloat16"
    float16 = "float16"
    float64 = "float64"


class Mode(str, Enum):
    truncate = "truncate"
    sliding = "sliding"


ModelOpt = Annotated[
    str | None,
    typer.Option(
        "--model",
        "-m",
        help="Hub id, local folder, .gguf file, patched-model folder, a built-in reference model: reference (the "
        "default, offline), reference:seed1, reference:nope, reference:prope, reference:ssmax; or smollm2-135m (a "
        "real checkpoint, fetched once by `hf-logscale fetch smollm2-135m`).",
    ),
]
DTypeOpt = Annotated[DType, typer.Option(help="Weights dtype.")]
DeviceOpt = Annotated[str | None, typer.Option(help="Device, e.g. cuda, cuda:1, cpu (default: transformers').")]
DeviceMapOpt = Annotated[str | None, typer.Option(help="auto: spread a large model over this node's GPUs.")]
AttnOpt = Annotated[
    str | None,
    typer.Option(
        "--attn",
        help="attn_implementation to load with: sdpa, eager, flex_attention, flash_attention_2, "
        "flash_attention_3 or a kernels-hub flash kernel (default: transformers').",
    ),
]
VariantOpt = Annotated[
    str | None, typer.Option(help="Variant spec or @recipe applied before evaluating, e.g. yarn:factor=4+logn.")
]
LengthsOpt = Annotated[
    str, typer.Option(help="Context lengths in tokens: 256,512,1k,2k (k = 1024) or multiples of L: 1x,2x,4x.")
]
DepthsOpt = Annotated[str, typer.Option(help="Depths of the key/needle, fractions in [0, 1].")]
TrialsOpt = Annotated[int, typer.Option(min=1, help="Prompts per (length, depth) cell.")]
SeedOpt = Annotated[int, typer.Option(help="Seed of the keys and haystack offsets.")]
DatasetOpt = Annotated[
    str,
    typer.Option(
        help="sample (offline), pg19, proof-pile, govreport, hub:owner/name[:config], or a .txt/.jsonl/"
        ".parquet path or folder of .txt."
    ),
]
FieldOpt = Annotated[str | None, typer.Option(help="Text field of a .jsonl/.parquet/hub dataset (default: text).")]
SplitOpt = Annotated[str | None, typer.Option(help="Dataset split (default: test; sample: heldout).")]
ModeOpt = Annotated[
    Mode,
    typer.Option(
        help="truncate: first n tokens of each document; sliding: all tokens, windows of n every --stride tokens."
    ),
]
StrideOpt = Annotated[int | None, typer.Option(help="Sliding-mode stride (default n/2).")]
MaxNewTokensOpt = Annotated[
    int, typer.Option(min=1, help="Tokens generated for an answer (its first integer is scored).")
]
MaxDocumentsOpt = Annotated[int | None, typer.Option(help="At most this many documents per length.")]
BatchOpt = Annotated[
    str, typer.Option(help="Windows/prompts per forward pass, or auto (about 32k tokens); halves on out-of-memory.")
]
OutOpt = Annotated[Path, typer.Option("--out", help="Results folder: results.jsonl (resumable) and summary.csv.")]


# a task setting -> its option (annotation, default) in `eval <task>`; the defaults are the tasks' own (a guard test)
SETTING_OPTIONS: dict[str, tuple[Any, Any]] = {
    "depths": (DepthsOpt, "0,0.25,0.5,0.75,1"),
    "trials": (TrialsOpt, 10),
    "seed": (SeedOpt, 0),
    "dataset": (DatasetOpt, "sample"),
    "field": (FieldOpt, None),
    "split": (SplitOpt, None),
    "mode": (ModeOpt, Mode.truncate),
    "stride": (StrideOpt, None),
    "max_documents": (MaxDocumentsOpt, None),
    "max_new_tokens": (MaxNewTokensOpt, 10),
}


def task_settings(values: dict[str, Any]) -> dict[str, Any]:
    """The task settings among a command's option values, as ``EvalSpec`` takes them."""
    from ..evaluation import parse_depths

    out = {}
    for name in SETTING_OPTIONS:
        if name in values:
            v = values[name]
            out[name] = parse_depths(v) if name == "depths" else v.value if isinstance(v, Enum) else v
    return out


def parse_batch_size(text: str) -> int | str:
    if text == "auto":
        return text
    if not (text.isdigit() and int(text) >= 1):
        raise UserError(f"--batch-size must be a positive integer or auto, got {text!r}")
    return int(text)


def parse_layers(text: str | None) -> tuple[int, ...] | None:
    if not text:
        return None
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise UserError(f"--layers must be comma-separated layer indices such as 0,1,2, got {text!r}") from None


def variants(text: str) -> list:
    """``--variants``: comma-separated specs (a spec's own ``k=v`` parameters continue it) → Variants."""
    from ..variants import parse_variant, split_variants

    return [parse_variant(v) for v in split_variants(text)]
