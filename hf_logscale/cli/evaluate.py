"""``hf-logscale eval ppl|passkey|needle``: one task over lengths (× depths) for one variant."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer

from .common import load_model, results_store
from .options import (
    SETTING_OPTIONS,
    AttnOpt,
    BatchOpt,
    DeviceOpt,
    DType,
    DTypeOpt,
    LengthsOpt,
    ModelOpt,
    OutOpt,
    VariantOpt,
    parse_batch_size,
    task_settings,
)
from .render import Progress, err, out, print_table

app = typer.Typer(
    help="Long-context evaluation: perplexity across lengths, passkey and needle retrieval.", no_args_is_help=True
)


# `eval <task>`: help, example and the settings it takes, in help order. Kept here so that `--help` imports no task
# (they import torch); tests/test_guards.py checks them against the registered tasks' own settings.
COMMANDS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "ppl": (
        "Perplexity, NLL and bits per byte at each length, with a per-position loss curve.",
        "hf-logscale eval ppl --lengths 1x,2x,4x,8x,16x  (add --model M --variant yarn:factor=4)",
        ("dataset", "field", "split", "mode", "stride", "max_documents"),
    ),
    "passkey": (
        "Passkey retrieval (YaRN's template) over lengths × depths: generation accuracy and teacher-forced scores.",
        "hf-logscale eval passkey --lengths 1x,2x,4x --trials 20",
        ("depths", "trials", "seed", "max_new_tokens"),
    ),
    "needle": (
        "Needle in a haystack: a key sentence at a sentence boundary of real text, exact-match scoring.",
        "hf-logscale eval needle --lengths 1x,4x --dataset pg19",
        ("depths", "trials", "seed", "max_new_tokens", "dataset", "field", "split"),
    ),
}


def _command(task: str, doc: str, example: str, fields: tuple[str, ...]) -> Callable[..., None]:
    """The ``eval <task>`` command: model, variant and lengths, the task's settings, then placement and output."""

    def command(**kw: Any) -> None:
        _evaluate(task, kw)

    options = [
        ("model_name", ModelOpt, None),
        ("variant", VariantOpt, None),
        ("lengths", LengthsOpt, "1x,2x,4x,8x,16x"),
        *((f, *SETTING_OPTIONS[f]) for f in fields),
        ("batch_size", BatchOpt, "auto"),
        ("dtype", DTypeOpt, DType.auto),
        ("device", DeviceOpt, None),
        ("attn", AttnOpt, None),
        ("out_dir", OutOpt, Path("results")),
    ]
    kind = inspect.Parameter.KEYWORD_ONLY
    command.__signature__ = inspect.Signature(
        [inspect.Parameter(n, kind, annotation=a, default=d) for n, a, d in options]
    )
    command.__doc__ = f"{doc}\n\n    Example: {example}\n    "
    command.__name__ = f"eval_{task}"
    return command


for _name, (_doc, _example, _fields) in COMMANDS.items():
    app.command(_name)(_command(_name, _doc, _example, _fields))


def _evaluate(task: str, kw: dict[str, Any]) -> None:
    from ..evaluation import EvalSpec, get_task, length_parts, parse_lengths, run_eval
    from ..variants import Variant, parse_variant

    v = parse_variant(kw["variant"]) if kw["variant"] is not None else Variant()  # checked before the model load
    size = parse_batch_size(kw["batch_size"])
    length_parts(kw["lengths"])
    settings = task_settings(kw)
    EvalSpec(task, (2,), **settings)  # every other setting checked now, before the model loads
    with results_store(kw["out_dir"]) as store:  # refuses a folder another run is writing, before the model loads
        model, tok, train_len_info = load_model(kw["model_name"], kw["dtype"], kw["device"], kw["attn"])
        L = train_len_info.value if train_len_info else None
        spec = EvalSpec(task, parse_lengths(kw["lengths"], L), **settings)
        err.print(f"{task}: lengths {', '.join(map(str, spec.lengths))}; variant {v.label}; results → {store.path}")
        name = kw["model_name"] or "reference"
        with Progress() as bar:
            records = run_eval(model, tok, v, spec, store, model_name=name, batch_size=size, progress=bar)
    print_table(get_task(task).table(records, L))
    out.print(f"Results: {store.path} and {store.dir / 'summary.csv'}")
