"""``hf-logscale compare``: the main job, variants × tasks × lengths on one model."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from ..errors import UserError
from .common import load_model, results_store
from .options import (
    AttnOpt,
    BatchOpt,
    DatasetOpt,
    DepthsOpt,
    DeviceMapOpt,
    DeviceOpt,
    DType,
    DTypeOpt,
    FieldOpt,
    LengthsOpt,
    MaxDocumentsOpt,
    MaxNewTokensOpt,
    Mode,
    ModelOpt,
    ModeOpt,
    SeedOpt,
    SplitOpt,
    StrideOpt,
    TrialsOpt,
    parse_batch_size,
    task_settings,
)
from .options import variants as parse_variants
from .render import Progress, err, out, print_grids

__all__ = ["compare"]


def compare(
    model_name: ModelOpt = None,
    variants: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated variant specs or @recipes (default: none, logn, YaRN, @qwen-dynamic-logn, and "
            "YaRN frequencies with critical τ = 0, 0.5, 1, 2, 4; F covers the largest length)."
        ),
    ] = None,
    tasks: Annotated[str, typer.Option(help="Comma-separated: ppl, passkey, needle.")] = "ppl,passkey",
    lengths: LengthsOpt = "1x,2x,4x,8x,16x",
    depths: DepthsOpt = "0,0.25,0.5,0.75,1",
    trials: TrialsOpt = 10,
    seed: SeedOpt = 0,
    max_new_tokens: MaxNewTokensOpt = 10,
    dataset: DatasetOpt = "sample",
    field: FieldOpt = None,
    split: SplitOpt = None,
    mode: ModeOpt = Mode.truncate,
    stride: StrideOpt = None,
    max_documents: MaxDocumentsOpt = None,
    batch_size: BatchOpt = "auto",
    dtype: DTypeOpt = DType.auto,
    device: DeviceOpt = None,
    device_map: DeviceMapOpt = None,
    attn: AttnOpt = None,
    out_dir: Annotated[Path, typer.Option("--out", help="Output folder (results, report, figures).")] = Path(
        "compare-results"
    ),
) -> None:
    """The main job: variants × tasks × lengths on one model; results.jsonl, summary.csv, report.md, figures.

    Example: hf-logscale compare  (the reference model, offline; add --model Qwen/Qwen2.5-7B --device-map auto)
    """
    settings = task_settings(locals())  # every task setting among the options, each task takes its own
    from ..compare import default_variants, run_compare, write_outputs
    from ..evaluation import EvalSpec, get_task, length_parts, parse_lengths

    task_list = [get_task(t.strip()) for t in tasks.split(",") if t.strip()]
    if not task_list:
        raise UserError("--tasks is empty; give e.g. ppl,passkey")
    length_parts(lengths)  # the form now; the values need L, known once the model is loaded
    chosen = parse_variants(variants) if variants is not None else None  # checked before the (slow) model load
    size = parse_batch_size(batch_size)
    for t in task_list:
        EvalSpec.taking(t.name, (2,), settings)  # checked now, before the model loads
    with results_store(out_dir) as store:  # refuses a folder another run is writing, before the model loads
        model, tok, train_len_info = load_model(model_name, dtype, device, attn, device_map)
        L = train_len_info.value if train_len_info else None
        lens = parse_lengths(lengths, L)
        chosen = chosen or default_variants(lens[-1], L or lens[-1])
        specs = [EvalSpec.taking(t.name, lens, settings) for t in task_list]
        name = model_name or "reference"
        err.print(f"tasks {tasks}; lengths {', '.join(map(str, lens))}; variants {', '.join(v.label for v in chosen)}")
        with Progress() as bar:
            result = run_compare(model, tok, chosen, specs, store, model_name=name, batch_size=size, progress=bar)
        command, shown = "hf-logscale " + " ".join(sys.argv[1:]), {"tasks": tasks, "lengths": lens, **settings}
        report = write_outputs(result, store.dir, model_name=name, train_len=L, settings=shown, command=command)
    print_grids(result, task_list, L)
    out.print(f"Report: {report} (figures beside it); records: {store.path}")
