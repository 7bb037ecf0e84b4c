"""``hf-logscale lm-eval``: lm-eval tasks in-process on a patched model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from ..errors import UserError
from .options import ModelOpt, OutOpt, VariantOpt
from .render import err, out, print_table

__all__ = ["lm_eval_cmd"]


def lm_eval_cmd(
    model: ModelOpt = None,
    variant: VariantOpt = None,
    tasks: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated lm-eval tasks: logscale_passkey, logscale_needle, logscale_ppl, or any of "
            "lm-eval's (e.g. ruler)."
        ),
    ] = None,
    lengths: Annotated[
        str | None, typer.Option(help="max_seq_lengths for the tasks: 256,1k,4k or 1x,2x (default: the tasks' own).")
    ] = None,
    limit: Annotated[int | None, typer.Option(min=1, help="At most this many items per task.")] = None,
    model_args: Annotated[
        str | None, typer.Option(help="Extra lm-eval model args k=v,k=v (e.g. batch_size=8).")
    ] = None,
    metadata: Annotated[str | None, typer.Option(help="Task metadata as JSON, e.g. '{\"trials\": 20}'.")] = None,
    out_dir: OutOpt = Path("results"),
    task_path: Annotated[bool, typer.Option("--task-path", help="Print the project's task folder and exit.")] = False,
) -> None:
    """Run lm-eval tasks in-process on a patched model; results beside the project's own records.

    Example: hf-logscale lm-eval --tasks logscale_passkey,logscale_ppl --lengths 1x,2x,4x --variant logn
    """
    from .. import lmeval
    from ..evaluation import parse_lengths
    from ..grammar import parse_items
    from ..tables import Table
    from ..variants import parse_variant

    if task_path:
        out.print(str(lmeval.task_path()))
        return
    if not tasks:
        raise UserError("--tasks is required (e.g. logscale_passkey,logscale_ppl)")
    v = parse_variant(variant) if variant is not None else None  # checked before anything loads ('' too)
    try:
        meta = json.loads(metadata) if metadata else {}
    except json.JSONDecodeError as e:
        raise UserError(f"--metadata must be a JSON object: {e}") from None
    if not isinstance(meta, dict):
        raise UserError(f"--metadata must be a JSON object such as '{{\"trials\": 20}}', got {metadata!r}")
    items = parse_items([x for x in (model_args or "").split(",") if x.strip()], "--model-args", strings=True)
    extra = lmeval.check_model_args(items)  # strict booleans (trust_remote_code=no is false), positive counts
    lens = None
    if lengths:
        train = None
        if "x" in lengths.lower():  # multiples of L: read the config (local folder or hub id) before loading
            train = lmeval.config_train_length(model)
            err.print(f"L = {train}")
        lens = list(parse_lengths(lengths, train.value if train else None))
    err.print(f"lm-eval on {model or 'the reference model'}, variant {v.label if v else 'none'}: {tasks}")
    _, records = lmeval.run_lmeval(
        model,
        v,
        [t.strip() for t in tasks.split(",") if t.strip()],
        out_dir=out_dir,
        lengths=lens,
        metadata=meta,
        limit=limit,
        model_args=extra,
        batch_size=extra.pop("batch_size", 1),
    )
    table = Table(
        f"lm-eval: {model or 'reference'} · {v.label if v else 'none'}", ["task", "length", "metric", "value"]
    )
    table.rows = [[r["task"], str(r["length"] or "all"), r["metric"], f"{r['value']:.4f}"] for r in records]
    print_table(table)
    out.print(f"Results: {out_dir / 'results.jsonl'}; lm-eval's own output: {out_dir / 'lm_eval_results.json'}")
