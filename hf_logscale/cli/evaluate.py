"""``hf-logscale eval ppl|passkey|needle``: one task over lengths (× depths) for one variant."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from ..errors import UserError
from .common import load_model, results_store
from .options import (
    AttnOpt,
    BatchOpt,
    DatasetOpt,
    DepthsOpt,
    DeviceOpt,
    DType,
    DTypeOpt,
    FieldOpt,
    LengthsOpt,
    MaxDocumentsOpt,
    Mode,
    ModelOpt,
    ModeOpt,
    OutOpt,
    SeedOpt,
    SplitOpt,
    StrideOpt,
    TrialsOpt,
    VariantOpt,
    parse_batch_size,
)
from .render import Progress, err, out, print_table

app = typer.Typer(
    help="Long-context evaluation: perplexity across lengths, passkey and needle retrieval.", no_args_is_help=True
)


@app.command("ppl")
def eval_ppl(
    model: ModelOpt = None,
    variant: VariantOpt = None,
    lengths: LengthsOpt = "1x,2x,4x,8x,16x",
    dataset: DatasetOpt = "sample",
    field: FieldOpt = None,
    split: SplitOpt = None,
    mode: ModeOpt = Mode.truncate,
    stride: StrideOpt = None,
    max_documents: MaxDocumentsOpt = None,
    batch_size: BatchOpt = "auto",
    dtype: DTypeOpt = DType.auto,
    device: DeviceOpt = None,
    attn: AttnOpt = None,
    out_dir: OutOpt = Path("results"),
) -> None:
    """Perplexity, NLL and bits per byte at each length, with a per-position loss curve.

    Example: hf-logscale eval ppl --lengths 1x,2x,4x,8x,16x  (add --model M --variant yarn:factor=4)
    """
    if stride is not None and mode is not Mode.sliding:
        raise UserError("--stride goes with --mode sliding")
    settings = dict(
        dataset=dataset, field=field, split=split, mode=mode.value, stride=stride, max_documents=max_documents
    )
    _evaluate("ppl", model, variant, lengths, None, settings, batch_size, dtype, device, attn, out_dir)


@app.command("passkey")
def eval_passkey(
    model: ModelOpt = None,
    variant: VariantOpt = None,
    lengths: LengthsOpt = "1x,2x,4x,8x,16x",
    depths: DepthsOpt = "0,0.25,0.5,0.75,1",
    trials: TrialsOpt = 10,
    seed: SeedOpt = 0,
    batch_size: BatchOpt = "auto",
    dtype: DTypeOpt = DType.auto,
    device: DeviceOpt = None,
    attn: AttnOpt = None,
    out_dir: OutOpt = Path("results"),
) -> None:
    """Passkey retrieval (YaRN's template) over lengths × depths: generation accuracy and teacher-forced scores.

    Example: hf-logscale eval passkey --lengths 1x,2x,4x --trials 20
    """
    settings = dict(trials=trials, seed=seed)
    _evaluate("passkey", model, variant, lengths, depths, settings, batch_size, dtype, device, attn, out_dir)


@app.command("needle")
def eval_needle(
    model: ModelOpt = None,
    variant: VariantOpt = None,
    lengths: LengthsOpt = "1x,2x,4x,8x,16x",
    depths: DepthsOpt = "0,0.25,0.5,0.75,1",
    trials: TrialsOpt = 10,
    seed: SeedOpt = 0,
    dataset: DatasetOpt = "sample",
    field: FieldOpt = None,
    split: SplitOpt = None,
    batch_size: BatchOpt = "auto",
    dtype: DTypeOpt = DType.auto,
    device: DeviceOpt = None,
    attn: AttnOpt = None,
    out_dir: OutOpt = Path("results"),
) -> None:
    """Needle in a haystack: a key sentence at a sentence boundary of real text, exact-match scoring.

    Example: hf-logscale eval needle --lengths 1x,4x --dataset pg19
    """
    settings = dict(trials=trials, seed=seed, dataset=dataset, field=field, split=split)
    _evaluate("needle", model, variant, lengths, depths, settings, batch_size, dtype, device, attn, out_dir)


def _evaluate(
    task: str, model, variant, lengths, depths, settings: dict[str, Any], batch_size, dtype, device, attn, out_dir: Path
) -> None:
    from ..eval import EvalSpec, get_task, length_parts, parse_depths, parse_lengths, run_eval
    from ..variants import Variant, parse_variant

    v = parse_variant(variant) if variant is not None else Variant()  # checked before the (slow) model load
    size = parse_batch_size(batch_size)
    length_parts(lengths)
    if depths is not None:
        settings["depths"] = parse_depths(depths)
    EvalSpec(task=task, lengths=(2,), **settings)  # every other setting checked now, before the model loads
    with results_store(out_dir) as store:  # refuses a folder another run is writing, before the model loads
        net, tok, tl = load_model(model, dtype, device, attn)
        spec = EvalSpec(task=task, lengths=parse_lengths(lengths, tl.value if tl else None), **settings)
        err.print(f"{task}: lengths {', '.join(map(str, spec.lengths))}; variant {v.label}; results → {store.path}")
        with Progress() as bar:
            records = run_eval(net, tok, v, spec, store, model_name=model or "reference", batch_size=size, progress=bar)
    print_table(get_task(task).table(records, tl.value if tl else None))
    out.print(f"Results: {store.path} and {store.dir / 'summary.csv'}")
