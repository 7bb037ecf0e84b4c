"""The ``hf-logscale`` command line: thin wrappers over the library; heavy imports happen inside commands."""

from __future__ import annotations

import os
import sys
import warnings
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

app = typer.Typer(
    help="Length-dependent attention scaling β_n for Hugging Face Llama / Qwen2 / Qwen3 / Mistral models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console()  # results
err = Console(stderr=True)  # progress and diagnostics


class DType(str, Enum):
    auto = "auto"
    float32 = "float32"
    bfloat16 = "bfloat16"
    float16 = "float16"
    float64 = "float64"


ModelOpt = Annotated[
    str | None,
    typer.Option(
        "--model",
        "-m",
        help="Hub id, local folder or patched-model folder (default: the built-in reference model, offline).",
    ),
]
DTypeOpt = Annotated[DType, typer.Option(help="Weights dtype.")]
DeviceOpt = Annotated[str | None, typer.Option(help="Device, e.g. cuda, cuda:1, cpu (default: transformers').")]
AttnOpt = Annotated[
    str | None,
    typer.Option(
        "--attn",
        help="attn_implementation to load with: sdpa, eager, "
        "flex_attention, flash_attention_2, flash_attention_3 or a kernels-hub flash kernel (default: transformers').",
    ),
]


@app.command()
def schemes() -> None:
    """List every β_n scheme: formula, parameters with defaults and ranges, origin.

    Example: hf-logscale schemes
    """
    from .schemes import SCHEMES

    table = Table(title="β_n schemes: s(n) multiplies the logits of a query that sees n keys (L = train_len)")
    for col in ("scheme", "s(n)", "parameters (default, range)", "origin"):
        table.add_column(col, overflow="fold")
    for name, cls in SCHEMES.items():
        params = []
        for f in cls.params():
            default = "model config" if f.name == "train_len" else f.default
            params.append(f"{f.name}={default} ({f.metadata['range']})")
        table.add_row(name, cls.formula, "\n".join(params) or "—", cls.origin)
    out.print(table)
    from .variants import recipe_names

    out.print("Recipes (use as --recipe NAME or variant @NAME): " + ", ".join(recipe_names()))


def _parse_layers(text: str | None) -> tuple[int, ...] | None:
    if not text:
        return None
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise ValueError(f"--layers must be comma-separated layer indices such as 0,1,2, got {text!r}") from None


def _build_variant(scheme, train_len, tau, params, variant, recipe):
    from dataclasses import replace

    from .config import LogScaleConfig
    from .variants import _value, load_recipe, parse_variant

    given = [name for name, v in (("--scheme", scheme), ("--variant", variant), ("--recipe", recipe)) if v]
    if len(given) != 1:
        raise ValueError(
            "give exactly one of --scheme, --variant or --recipe" + (f" (got {', '.join(given)})" if given else "")
        )
    if (tau is not None or params) and not scheme:
        raise ValueError("--tau and --param go with --scheme; put parameters in the --variant spec instead")
    if scheme:
        kv = {}
        for item in params:
            key, eq, val = item.partition("=")
            if not eq:
                raise ValueError(f"--param expects key=value, got {item!r}")
            kv[key.strip()] = _value(val, f"--param {key.strip()}")
        if tau is not None:
            kv["tau"] = tau
        from .variants import Variant

        return Variant(scale=LogScaleConfig(scheme=scheme, train_len=train_len, params=kv))
    v = parse_variant(variant) if variant else load_recipe(recipe)
    if train_len is not None:
        v = replace(v, scale=v.scale.with_train_len(train_len))
    return v


@app.command()
def patch(
    model: ModelOpt = None,
    scheme: Annotated[str | None, typer.Option(help="β_n scheme name (see `hf-logscale schemes`).")] = None,
    train_len: Annotated[int | None, typer.Option(help="L; default: from the model config.")] = None,
    tau: Annotated[float | None, typer.Option(help="τ of the critical scheme.")] = None,
    param: Annotated[list[str] | None, typer.Option(help="Scheme parameter k=v (repeatable).")] = None,
    variant: Annotated[
        str | None, typer.Option(help="Variant spec, e.g. yarn:factor=4,attention_factor=1+logn")
    ] = None,
    recipe: Annotated[str | None, typer.Option(help="Recipe name (e.g. qwen-logn) or .toml file.")] = None,
    layers: Annotated[str | None, typer.Option(help="Comma-separated layer indices (default: all).")] = None,
    out_dir: Annotated[Path | None, typer.Option("--out", help="Write a patched-model folder here.")] = None,
    merge: Annotated[bool, typer.Option(help="With --out: write full weights + a config carrying the patch.")] = False,
    dtype: DTypeOpt = DType.float32,
    device: DeviceOpt = None,
    attn: AttnOpt = None,
) -> None:
    """Patch a model, print the effective logit multipliers, verify the patch is live, optionally save it.

    Example: hf-logscale patch --variant yarn:factor=4,attention_factor=1+logn  (add --model Qwen/Qwen2.5-7B)
    """
    if merge and out_dir is None:
        raise ValueError("--merge needs --out DIR")
    v = _build_variant(scheme, train_len, tau, param or [], variant, recipe)
    layer_ids = _parse_layers(layers)  # check options before the (slow) model load
    import hf_logscale as hls

    err.print(f"Loading {model or 'the reference model'} …")
    net, tok = hls.load(model, dtype=dtype.value, device=device, attn_implementation=attn)
    hls.patch(net, v, layers=layer_ids)
    report = hls.describe(net)
    _render_report(report)
    check = hls.verify(net)
    if check.ok:
        out.print(
            f"[green]✓ verified[/green]: one forward pass at n = {', '.join(str(p + 1) for p in check.positions)}"
            f" — {check.message}"
        )
    else:
        out.print(f"[red]✗ verification failed[/red]: {check.message}")
        raise typer.Exit(1)
    if out_dir is not None:
        path = hls.save_patched(net, out_dir, tok, merge=merge)
        size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
        kind = "merged model" if merge else "patched-model folder (no weights)"
        out.print(
            f"Wrote {kind} to {path} ({size / 2**20:.2f} MiB); load it with hls.load({str(path)!r}) or --model {path}"
        )


eval_app = typer.Typer(
    help="Long-context evaluation: perplexity across lengths, passkey and needle retrieval.", no_args_is_help=True
)
app.add_typer(eval_app, name="eval")

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
    typer.Option(help="sample (offline), pg19, proof-pile, govreport, hub:owner/name[:config], or a .txt/.jsonl/"
                 ".parquet path or folder of .txt."),
]  # fmt: skip
FieldOpt = Annotated[str | None, typer.Option(help="Text field of a .jsonl/.parquet/hub dataset (default: text).")]
SplitOpt = Annotated[str | None, typer.Option(help="Dataset split (default: test; sample: heldout).")]
BatchOpt = Annotated[str, typer.Option(help="Windows/prompts per forward pass, or auto (about 32k tokens); halves "
                                            "on out-of-memory.")]  # fmt: skip
OutOpt = Annotated[Path, typer.Option("--out", help="Results folder: results.jsonl (resumable) and summary.csv.")]


class Mode(str, Enum):
    truncate = "truncate"
    sliding = "sliding"


@eval_app.command("ppl")
def eval_ppl(
    model: ModelOpt = None,
    variant: VariantOpt = None,
    lengths: LengthsOpt = "1x,2x,4x,8x,16x",
    dataset: DatasetOpt = "sample",
    field: FieldOpt = None,
    split: SplitOpt = None,
    mode: Annotated[
        Mode,
        typer.Option(
            help="truncate: first n tokens of each document; sliding: all tokens, windows of n every --stride tokens."
        ),
    ] = Mode.truncate,  # fmt: skip
    stride: Annotated[int | None, typer.Option(help="Sliding-mode stride (default n/2).")] = None,
    max_documents: Annotated[int | None, typer.Option(help="At most this many documents per length.")] = None,
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
        raise ValueError("--stride goes with --mode sliding")
    settings = dict(dataset=dataset, field=field, split=split, mode=mode.value, stride=stride,
                    max_documents=max_documents)  # fmt: skip
    _evaluate("ppl", model, variant, lengths, None, settings, batch_size, dtype, device, attn, out_dir)


@eval_app.command("passkey")
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
    _evaluate("passkey", model, variant, lengths, depths, dict(trials=trials, seed=seed), batch_size, dtype, device,
              attn, out_dir)  # fmt: skip


@eval_app.command("needle")
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


def _evaluate(task, model, variant, lengths, depths, settings, batch_size, dtype, device, attn, out_dir) -> None:
    from .eval import EvalSpec, evaluate, parse_depths, parse_lengths
    from .models import train_length
    from .results import ResultStore
    from .variants import parse_variant

    v = parse_variant(variant) if variant else None  # check options before the (slow) model load
    if depths is not None:
        settings["depths"] = parse_depths(depths)
    _check_batch_size(batch_size)
    import hf_logscale as hls

    device = _placement(device)
    err.print(f"Loading {model or 'the reference model'} …")
    net, tok = hls.load(model, variant=v, dtype=dtype.value, device=device, attn_implementation=attn)
    tl = train_length(net)
    train_len = tl.value if tl else None
    spec = EvalSpec(task=task, lengths=parse_lengths(lengths, train_len), **settings)
    store = ResultStore(out_dir)
    err.print(f"L = {tl or 'unknown'}")
    err.print(f"{task}: lengths {', '.join(map(str, spec.lengths))}; variant {v.label if v else 'none'}")
    err.print(f"results → {store.path}")
    with _progress() as bar:
        records = evaluate(
            net, tok, spec, store, model_name=model or "reference", variant=v.label if v else "none",
            batch_size=batch_size if batch_size == "auto" else int(batch_size), progress=bar,
        )  # fmt: skip
    _render_records(task, records, train_len)
    out.print(f"Results: {store.path} and {store.dir / 'summary.csv'}")


def _placement(device: str | None, device_map: str | None = None) -> str | None:
    """The device for this process: under ``accelerate launch`` one per process (its local GPU, or the CPU) and
    only the main process prints; alone, CUDA when available unless told otherwise."""
    import torch

    from .distributed import current

    dist = current()
    if dist.world == 1:
        return "cuda" if device is None and device_map is None and torch.cuda.is_available() else device
    if device_map is not None:
        raise ValueError("--device-map splits one model over GPUs; under accelerate launch each process holds a copy")
    if not dist.main:
        out.quiet = err.quiet = True
    if device is None and torch.cuda.is_available():
        device = f"cuda:{os.environ.get('LOCAL_RANK', '0')}"
    return device


def _check_batch_size(batch_size: str) -> None:
    if batch_size != "auto" and not (batch_size.isdigit() and int(batch_size) >= 1):
        raise ValueError(f"--batch-size must be a positive integer or auto, got {batch_size!r}")


class _progress:
    """A rich progress bar on stderr; calling it starts a task and returns its advance function."""

    def __enter__(self):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn, TimeRemainingColumn

        self.bar = Progress(
            "{task.description}", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
            console=err, transient=False,
        )  # fmt: skip
        self.bar.__enter__()
        self.task, self.count = None, 0
        return self

    def __exit__(self, *exc):
        return self.bar.__exit__(*exc)

    def __call__(self, description: str, total: int):
        """A bar for the next unit of work (a cell); the finished one is removed, so one line stays on screen."""
        if self.task is not None:
            self.bar.remove_task(self.task)
        self.count += 1
        self.task = task = self.bar.add_task(f"[{self.count}] {description}", total=total)
        return lambda k: self.bar.advance(task, k)


def _render_records(task: str, records: list[dict], train_len: int | None) -> None:
    from .eval import METRICS

    by_cell: dict[tuple, dict[str, dict]] = {}
    for r in records:
        by_cell.setdefault((r["length"], r["depth"]), {})[r["metric"]] = r
    lengths = sorted({n for n, _ in by_cell})
    ratio = (lambda n: f"{n / train_len:g}") if train_len else (lambda n: "—")
    table = Table(title=f"{task}: {records[0]['model']} · {records[0]['variant']}" if records else task)
    table.add_column("n", justify="right")
    table.add_column("n / L", justify="right")
    if task == "ppl":
        for col in ("perplexity", "NLL", "bits/byte", "tokens", "docs (skipped)"):
            table.add_column(col, justify="right")
        for n in lengths:
            m = by_cell[(n, None)]
            if m["nll"]["status"] != "ok":
                table.add_row(str(n), ratio(n), "[red]out of memory[/red]", "", "", "", "")
                continue
            c = m["nll"]["counts"]
            table.add_row(
                str(n), ratio(n), f"{m['perplexity']['value']:.3f}", f"{m['nll']['value']:.4f}",
                f"{m['bits_per_byte']['value']:.4f}", f"{c['tokens']:,}", f"{c['documents']} ({c['skipped']})",
            )  # fmt: skip
    else:
        depths = sorted({d for _, d in by_cell})
        for d in depths:
            table.add_column(f"acc @ {d:g}", justify="right")
        for col in ("accuracy", "TF key top-1", "TF token top-1", "TF log p"):
            table.add_column(col, justify="right")
        for n in lengths:
            cells = [by_cell[(n, d)] for d in depths]
            ok = [c for c in cells if c["accuracy"]["status"] == "ok"]
            accs = [f"{c['accuracy']['value']:.2f}" if c in ok else "[red]OOM[/red]" for c in cells]
            means = [sum(c[k]["value"] for c in ok) / len(ok) if ok else float("nan") for k in METRICS[task]]
            table.add_row(str(n), ratio(n), *accs, *(f"{m:.2f}" for m in means))
    out.print(table)


@app.command()
def compare(
    model: ModelOpt = None,
    variants: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated variant specs or @recipes (default: none, logn, critical:tau=0.5, "
            "critical:tau=2, ssmax and three YaRN settings with F covering the largest length)."
        ),
    ] = None,  # fmt: skip
    tasks: Annotated[str, typer.Option(help="Comma-separated: ppl, passkey, needle.")] = "ppl,passkey",
    lengths: LengthsOpt = "1x,2x,4x,8x,16x",
    depths: DepthsOpt = "0,0.25,0.5,0.75,1",
    trials: TrialsOpt = 10,
    seed: SeedOpt = 0,
    dataset: DatasetOpt = "sample",
    field: FieldOpt = None,
    split: SplitOpt = None,
    mode: Annotated[Mode, typer.Option(help="Perplexity mode (see `eval ppl --help`).")] = Mode.truncate,
    stride: Annotated[int | None, typer.Option(help="Sliding-mode stride (default n/2).")] = None,
    max_documents: Annotated[int | None, typer.Option(help="At most this many documents per length.")] = None,
    batch_size: BatchOpt = "auto",
    dtype: DTypeOpt = DType.auto,
    device: DeviceOpt = None,
    device_map: Annotated[str | None, typer.Option(help="auto: spread a large model over this node's GPUs.")] = None,
    attn: AttnOpt = None,
    out_dir: Annotated[Path, typer.Option("--out", help="Output folder (results, report, figures).")] = Path(
        "compare-results"
    ),
) -> None:
    """The main job: variants × tasks × lengths on one model; results.jsonl, summary.csv, report.md, figures.

    Example: hf-logscale compare  (the reference model, offline; add --model Qwen/Qwen2.5-7B --device-map auto)
    """
    from .compare import run_compare

    task_list = [t.strip() for t in tasks.split(",") if t.strip()]
    if stride is not None and mode is not Mode.sliding:
        raise ValueError("--stride goes with --mode sliding")
    settings = dict(depths=depths, trials=trials, seed=seed, dataset=dataset, field=field, split=split,
                    mode=mode.value, stride=stride, max_documents=max_documents)  # fmt: skip
    _check_batch_size(batch_size)
    device = _placement(device, device_map)
    result, train_len, report = run_compare(
        model, variants, task_list, lengths, settings, out_dir=out_dir,
        batch_size=batch_size if batch_size == "auto" else int(batch_size), dtype=dtype.value, device=device,
        device_map=device_map, attn=attn, log=err.print, progress=_progress,
        command="hf-logscale " + " ".join(sys.argv[1:]),
    )  # fmt: skip
    _render_matrix(result, train_len)
    out.print(f"Report: {report} (figures beside it); records: {report.parent / 'results.jsonl'}")


def _render_matrix(result, train_len: int | None) -> None:
    from .report import mean_by

    for task, metric, title, fmt in (
        ("ppl", "perplexity", "perplexity", "{:.2f}"),
        ("passkey", "accuracy", "passkey accuracy (mean over depths)", "{:.2f}"),
        ("needle", "accuracy", "needle accuracy (mean over depths)", "{:.2f}"),
    ):
        values = mean_by(result.records, task, metric)
        if not values:
            continue
        lengths = sorted({n for _, n in values})
        table = Table(title=title)
        table.add_column("variant")
        for n in lengths:
            table.add_column(f"{n}" + (f"\n{n / train_len:g}×L" if train_len else ""), justify="right")
        for v in result.variants:
            row = [values.get((v, n), "missing") for n in lengths]
            table.add_row(v, *("—" if x == "missing" else "OOM" if x is None else fmt.format(x) for x in row))
        out.print(table)


@app.command("lm-eval")
def lm_eval_cmd(
    model: ModelOpt = None,
    variant: VariantOpt = None,
    tasks: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated lm-eval tasks: logscale_passkey, logscale_needle, "
            "logscale_ppl, or any of lm-eval's (e.g. ruler)."
        ),
    ] = None,  # fmt: skip
    lengths: Annotated[
        str | None, typer.Option(help="max_seq_lengths for the tasks: 256,1k,4k or 1x,2x (default: the tasks' own).")
    ] = None,  # fmt: skip
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
    try:
        from . import lmeval
    except ImportError as e:
        raise ImportError(str(e)) from None
    if task_path:
        out.print(str(lmeval.task_path()))
        return
    if not tasks:
        raise ValueError("--tasks is required (e.g. logscale_passkey,logscale_ppl)")
    if variant:
        from .variants import parse_variant

        parse_variant(variant)  # fail before loading anything
    import json

    from .eval.run import parse_lengths

    meta = {}
    if metadata:
        try:
            meta = json.loads(metadata)
        except json.JSONDecodeError as e:
            raise ValueError(f"--metadata must be a JSON object: {e}") from None
    extra = {}
    for item in (model_args or "").split(","):
        if item.strip():
            key, eq, value = item.partition("=")
            if not eq:
                raise ValueError(f"--model-args expects k=v pairs, got {item!r}")
            extra[key.strip()] = _arg_value(value.strip())
    lens = None
    if lengths:
        train = None
        if "x" in lengths.lower():  # multiples of L: read the config (local folder or hub id), as patch does
            from transformers import AutoConfig

            from .models import REFERENCE_MODEL
            from .train_length import resolve_train_len

            resolved = resolve_train_len(AutoConfig.from_pretrained(model or REFERENCE_MODEL))
            err.print(f"L = {resolved}")
            train = resolved.value
        lens = list(parse_lengths(lengths, train))
    err.print(f"lm-eval on {model or 'the reference model'}, variant {variant or 'none'}: {tasks}")
    raw, records = lmeval.run_lmeval(
        model, variant, [t.strip() for t in tasks.split(",") if t.strip()], out_dir=out_dir, lengths=lens,
        metadata=meta, limit=limit, model_args=extra, batch_size=extra.pop("batch_size", 1),
    )  # fmt: skip
    table = Table(title=f"lm-eval: {model or 'reference'} · {variant or 'none'}")
    for col in ("task", "length", "metric", "value"):
        table.add_column(col, justify="right" if col in ("length", "value") else "left")
    for r in records:
        table.add_row(r["task"], str(r["length"] or "all"), r["metric"], f"{r['value']:.4f}")
    out.print(table)
    out.print(f"Results: {out_dir / 'results.jsonl'}; lm-eval's own output: {out_dir / 'lm_eval_results.json'}")


def _arg_value(text: str):
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


@app.command()
def diagnose(
    model: ModelOpt = None,
    variants: Annotated[str, typer.Option(help="Comma-separated variant specs or @recipes.")] = (
        "none,logn,critical:tau=0.5,critical:tau=2"
    ),
    lengths: LengthsOpt = "1x,2x,4x,8x,16x",
    windows: Annotated[int, typer.Option(min=1, help="Windows of held-out text per length.")] = 2,
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
    from .data.sources import load_documents
    from .diagnostics import diagnose as run
    from .diagnostics.figures import plot_collapse, plot_entropy
    from .eval.run import parse_lengths
    from .models import load, train_length
    from .variants import parse_variant, split_variants

    specs = split_variants(variants)
    for v in specs:
        parse_variant(v)
    device = _placement(device)
    err.print(f"Loading {model or 'the reference model'} …")
    net, tok = load(model, dtype=dtype.value, device=device, attn_implementation=attn)
    tl = train_length(net)
    train_len = tl.value if tl else None
    err.print(f"L = {tl or 'unknown'}")
    lens = parse_lengths(lengths, train_len)
    texts = [d.text for d in load_documents(dataset)]
    out_dir.mkdir(parents=True, exist_ok=True)
    with _progress() as bar:
        diag = run(net, tok, texts, specs, lens, windows=windows, gradients=gradients,
                   advance=bar("variants × lengths", len(specs) * len(lens)))  # fmt: skip
    name = model or "reference"
    files = [
        diag.save(out_dir / "diagnostics.json"),
        plot_entropy(diag, train_len, out_dir / "entropy_vs_n.png", f"{name}: attention entropy vs keys seen"),
        plot_collapse(diag, train_len, out_dir / "collapse.png", f"{name}: token collapse and gradient flow"),
    ]
    table = Table(title="mean attention entropy (nats) of rows seeing n ∈ (N/2, N] keys, all layers and heads")
    table.add_column("variant")
    for n in lens:
        table.add_column(str(n), justify="right")
    import torch

    from .diagnostics import band_entropy

    for v, e in diag["entropy"].items():
        t = torch.tensor(e)
        table.add_row(v, *(f"{band_entropy(t, n):.3f}" for n in lens))
    out.print(table)
    out.print("Wrote " + ", ".join(str(f) for f in files))


@app.command()
def calibrate(
    model: ModelOpt = None,
    lengths: Annotated[str, typer.Option(help="Lengths to match (beyond L): 2x,4x or 512,1k.")] = "2x,4x,8x,16x",
    per_layer: Annotated[bool, typer.Option(help="Also fit τ for each layer alone (reported).")] = False,
    windows: Annotated[int, typer.Option(min=1, help="Windows of held-out text.")] = 2,
    dataset: DatasetOpt = "sample",
    dtype: DTypeOpt = DType.auto,
    device: DeviceOpt = None,
    attn: AttnOpt = None,
    out_file: Annotated[Path, typer.Option("--out", help="Recipe file to write.")] = Path("calibrated.toml"),
) -> None:
    """Fit τ of the critical scheme so attention entropy beyond L matches the model's own at L; write a recipe.

    Example: hf-logscale calibrate --out calibrated.toml, then hf-logscale compare --variants none,logn,@calibrated.toml
    """
    from .data.sources import load_documents
    from .diagnostics import calibrate as fit
    from .diagnostics import token_windows
    from .eval.run import parse_lengths
    from .models import load, train_length
    from .results import write_atomic

    if out_file.suffix != ".toml":
        raise ValueError(f"--out must be a .toml recipe file, got {out_file}")
    device = _placement(device)
    err.print(f"Loading {model or 'the reference model'} …")
    net, tok = load(model, dtype=dtype.value, device=device, attn_implementation=attn)
    tl = train_length(net)
    if tl is None:
        raise ValueError("the model config states no training length; calibration needs one")
    train_len = tl.value
    err.print(f"L = {tl}")
    lens = parse_lengths(lengths, train_len)
    texts = [d.text for d in load_documents(dataset)]
    ws = token_windows(tok, texts, max(lens), windows)
    result = fit(net, ws, lens, train_len, log=err.print)
    table = Table(title=f"critical τ = {result.tau:.4f}; target entropy at L = {train_len}: {result.target:.4f} nats; "
                        f"RMS misfit {result.rms:.4f}")  # fmt: skip
    for col in ("N", "entropy unscaled", f"entropy at τ = {result.tau:.3f}", "target"):
        table.add_column(col, justify="right")
    for n in result.lengths:
        table.add_row(str(n), f"{result.unscaled[n]:.4f}", f"{result.fitted[n]:.4f}", f"{result.target:.4f}")
    out.print(table)
    if per_layer:
        layers = Table(title="τ fitted per layer (only that layer scaled)")
        for col in ("layer", "τ", "RMS misfit"):
            layers.add_column(col, justify="right")
        from .patching.families import attention_layers

        for i, _ in attention_layers(net):
            err.print(f"layer {i}:")
            r = fit(net, ws, lens, train_len, layer=i, log=err.print)
            layers.add_row(str(i), f"{r.tau:.4f}", f"{r.rms:.4f}")
        out.print(layers)
    desc = f"critical τ calibrated on {model or 'the reference model'}: attention entropy at {list(lens)} matched to L"
    write_atomic(out_file, result.recipe(train_len, desc))
    out.print(f"Wrote {out_file}: use it as --recipe {out_file} or in --variants @{out_file}")


theory_app = typer.Typer(
    help="The paper's model of one attention layer: phase diagrams, n-sweeps, single points vs closed forms.",
    no_args_is_help=True,
)
app.add_typer(theory_app, name="theory")


class Metric(str, Enum):
    lambda_ = "lambda"
    eta = "eta"
    self_weight = "self-weight"
    output_cosine = "output-cosine"
    entropy = "entropy"


class TokenKind(str, Enum):
    gaussian = "gaussian"
    simplex = "simplex"


def _grid(text: str, name: str) -> list[float]:
    """``start:stop:count`` (inclusive, evenly spaced) or a comma-separated list."""
    try:
        if ":" in text:
            start, stop, count = text.split(":")
            k = int(count)
            if k < 2:
                raise ValueError
            return [float(start) + (float(stop) - float(start)) * i / (k - 1) for i in range(k)]
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"{name} must be start:stop:count (count ≥ 2) or a comma list, got {text!r}") from None


def _ints(text: str, name: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 2:
        raise ValueError(f"{name} must be comma-separated integers ≥ 2, got {text!r}")
    return values


@theory_app.command("phase-diagram")
def theory_phase(
    d: Annotated[str, typer.Option("--d", help="Token dimensions, one panel each.")] = "512,32,2",
    n: Annotated[int, typer.Option("--n", min=2, help="Number of tokens.")] = 1024,
    rho_grid: Annotated[str, typer.Option(help="ρ values: start:stop:count or a list, in (0, 1).")] = "0.02:0.9:40",
    gamma_grid: Annotated[str, typer.Option(help="γ values (β_n = γ ln n): start:stop:count or a list.")] = "0:12:40",
    relative: Annotated[bool, typer.Option(help="Read --gamma-grid as γ/γ_c (the critical curve is then 1).")] = False,
    alpha: Annotated[float, typer.Option(min=0.0, help="Residual weight α.")] = 0.0,
    metric: Annotated[Metric, typer.Option(help="What to map.")] = Metric.lambda_,
    tokens: Annotated[TokenKind, typer.Option(help="Almost-simplex Gaussian tokens or exact simplex (d ≥ n).")] = (
        TokenKind.gaussian
    ),
    seed: SeedOpt = 0,
    probes: Annotated[int, typer.Option(min=1, help="Hutchinson probes per point (η).")] = 2,
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for the figure and the CSV.")] = Path("theory"),
) -> None:
    """Heatmaps of a metric over (ρ, γ), one panel per d, with the dashed critical curve γ_c = 1/(1 − ρ).

    Example: hf-logscale theory phase-diagram --metric eta
    """
    from .theory import phase_diagram, write_csv
    from .theory.figures import plot_phase

    dims, rhos, gammas = _ints(d, "--d"), _grid(rho_grid, "--rho-grid"), _grid(gamma_grid, "--gamma-grid")
    if not all(0 < r < 1 for r in rhos):
        raise ValueError(f"--rho-grid values must be in (0, 1), got {rho_grid!r}")
    if min(gammas) < 0:
        raise ValueError(f"--gamma-grid values must be ≥ 0, got {gamma_grid!r}")
    name = metric.value.replace("-", "_")
    out_dir.mkdir(parents=True, exist_ok=True)
    grids = []
    with _progress() as bar:
        for dim in dims:
            advance = bar(f"{metric.value} d={dim}", len(rhos))
            grids.append(phase_diagram(dim, n, rhos, gammas, relative=relative, metric=name, alpha=alpha,
                                       tokens=tokens.value, seed=seed, probes=probes, advance=advance))  # fmt: skip
    fig = plot_phase(grids, out_dir / f"phase_{name}.png")
    csv = write_csv(grids, out_dir / f"phase_{name}.csv")
    for g in grids:
        out.print(f"d = {g.d}: {len(rhos)} × {len(gammas)} grid in {g.seconds:.1f} s")
    out.print(f"Figure: {fig}; every grid point: {csv}")


@theory_app.command("sweep-n")
def theory_sweep(
    n: Annotated[str, typer.Option("--n", help="Numbers of tokens.")] = "64,256,1024",
    d: Annotated[int | None, typer.Option("--d", help="Dimension (default: n, exact simplex tokens).")] = None,
    rho: Annotated[float, typer.Option(help="Token cosine ρ in (0, 1).")] = 0.5,
    ratio_grid: Annotated[str, typer.Option(help="γ/γ_c values: start:stop:count or a list.")] = "0.25:2:43",
    alpha: Annotated[float, typer.Option(min=0.0, help="Residual weight α.")] = 0.0,
    metric: Annotated[Metric, typer.Option(help="What to plot.")] = Metric.lambda_,
    tokens: Annotated[TokenKind, typer.Option(help="Token configuration.")] = TokenKind.simplex,
    seed: SeedOpt = 0,
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for the figure and the CSV.")] = Path("theory"),
) -> None:
    """The metric against γ/γ_c for several n: the transition sharpens (logarithmically) as n grows.

    Example: hf-logscale theory sweep-n --rho 0.5 --n 64,256,1024
    """
    import csv as csv_mod

    from .theory import sweep_n
    from .theory.figures import plot_sweep

    ns, ratios = _ints(n, "--n"), _grid(ratio_grid, "--ratio-grid")
    if not 0 < rho < 1:
        raise ValueError(f"--rho must be in (0, 1), got {rho}")
    name = metric.value.replace("-", "_")
    out_dir.mkdir(parents=True, exist_ok=True)
    values = sweep_n(ns, d, rho, ratios, metric=name, alpha=alpha, tokens=tokens.value, seed=seed)
    fig = plot_sweep(values, ratios, rho, name, out_dir / f"sweep_{name}.png", alpha=alpha, d=d)
    path = out_dir / f"sweep_{name}.csv"
    with path.open("w", newline="") as f:
        w = csv_mod.writer(f)
        w.writerow(["metric", "n", "d", "rho", "alpha", "gamma_over_gamma_c", "value"])
        for k, v in values.items():
            w.writerows([name, k, d or k, rho, alpha, r, f"{float(x):.10g}"] for r, x in zip(ratios, v, strict=True))
    out.print(f"Figure: {fig}; values: {path}")


@theory_app.command("point")
def theory_point(
    rho: Annotated[float, typer.Option(help="Token cosine ρ in (0, 1).")],
    gamma: Annotated[float, typer.Option(help="γ ≥ 0 (β_n = γ ln n).")],
    n: Annotated[int, typer.Option("--n", min=2, help="Number of tokens.")] = 1024,
    d: Annotated[int | None, typer.Option("--d", help="Dimension (default n).")] = None,
    alpha: Annotated[float, typer.Option(min=0.0, help="Residual weight α.")] = 0.0,
    tokens: Annotated[TokenKind, typer.Option(help="Token configuration.")] = TokenKind.simplex,
    seed: SeedOpt = 0,
    probes: Annotated[int, typer.Option(min=1, help="Hutchinson probes (η).")] = 8,
) -> None:
    """Every metric at one point, next to the exact finite-n closed form (simplex tokens) and the n → ∞ limit.

    Example: hf-logscale theory point --rho 0.5 --gamma 2 --n 1024
    """
    from .theory import eta, gamma_c, gaussian_tokens, limits, metrics, simplex_exact, simplex_tokens

    if not 0 < rho < 1 or gamma < 0:
        raise ValueError(f"need ρ in (0, 1) and γ ≥ 0, got ρ={rho}, γ={gamma}")
    dim = d or n
    tok = simplex_tokens(n, rho, d=dim) if tokens is TokenKind.simplex else gaussian_tokens(n, dim, rho, seed)
    sim = {k: float(v[0]) for k, v in metrics(tok.x, [gamma], alpha).items()}
    sim["eta"] = float(eta(tok.x, [gamma], alpha, probes=probes, seed=seed)[0])
    exact = simplex_exact(n, rho, gamma, alpha) if tokens is TokenKind.simplex else {}
    lim = limits(gamma, rho, alpha, d=dim)
    ratio = gamma / gamma_c(rho)
    table = Table(title=f"ρ = {rho:g} (realised {tok.mean_cosine:.4f}), γ = {gamma:g} = {ratio:.3f} γ_c, "
                        f"n = {n}, d = {dim}, α = {alpha:g}: {lim['regime']}")  # fmt: skip
    for col in ("metric", "simulated", "exact (finite n)", "limit n → ∞"):
        table.add_column(col, justify="right" if col != "metric" else "left")
    fmt = lambda x: "—" if x is None else f"{x:.6f}"  # noqa: E731
    for k in ("self_weight", "lambda", "output_cosine", "entropy", "eta"):
        table.add_row(k, fmt(sim[k]), fmt(exact.get(k)), fmt(lim.get(k)))
    out.print(table)


def _render_report(r) -> None:
    info = Table(show_header=False, box=None)
    info.add_column(style="bold")
    info.add_column()
    windows = sorted({w for w in r.windows.values() if w is not None})
    sliding = [i for i, w in r.windows.items() if w is not None]
    rows = [
        ("architecture", f"{r.architecture} ({r.model_type}, {r.num_layers} attention layers)"),
        ("attention", r.attn_implementation),
        ("variant", r.variant),
        ("patched layers", _ranges(r.patched_layers) + (" (all)" if len(r.patched_layers) == r.num_layers else "")),
        (
            "sliding windows",
            "none"
            if not sliding
            else f"W = {', '.join(map(str, windows))} on layers {_ranges(sliding)}: n = min(pos + 1, W)",
        ),
        ("train length L", f"{r.train_len} ({r.train_len_source})"),
        (
            "RoPE",
            f"{r.rope}, attention factor {r.rope_attention_factor:.4f}"
            + (f" → logits × {r.rope_attention_factor**2:.4f} compound with s(n)" if r.compounding else ""),
        ),
    ]
    if r.native_scale:
        state = "replaced by s(n) while patched (restored by unpatch)" if r.native_replaced else "on, × s(n)"
        rows.append(("native length scale", f"{r.native_scale}: {state}"))
    for k, v in rows:
        info.add_row(k, v)
    out.print(info)
    table = Table(title="Effective logit multiplier")
    keys = [k for k in r.rows[0] if k != "n"]
    table.add_column("n", justify="right")
    table.add_column("n / L", justify="right")
    for k in keys:
        label = {"s": "s(n)", "native": "native", "effective": "× RoPE factor² = effective"}.get(
            k, k.replace("s@window", "s(min(n, W=") + "))" if k.startswith("s@") else k
        )
        table.add_column(label, justify="right")
    for row in r.rows:
        table.add_row(str(row["n"]), f"{row['n'] / r.train_len:g}", *(f"{row[k]:.4f}" for k in keys))
    out.print(table)


def _ranges(ids: list[int]) -> str:
    ids = sorted(ids)
    if not ids:
        return "none"
    parts, start, prev = [], ids[0], ids[0]
    for i in ids[1:] + [None]:
        if i is not None and i == prev + 1:
            prev = i
            continue
        parts.append(str(start) if start == prev else f"{start}–{prev}")
        if i is not None:
            start = prev = i
    return ", ".join(parts)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    err.print(f"[yellow]Warning:[/yellow] {escape(str(message))}", highlight=False, soft_wrap=True)


def main() -> None:
    """Console entry point: known errors become one ``Error: …`` line and exit code 2 (HF_LOGSCALE_DEBUG=1 shows
    the traceback)."""
    warnings.showwarning = _show_warning
    try:
        code = app(standalone_mode=False)
    except typer.Abort:
        sys.exit(130)
    except (ValueError, FileNotFoundError, RuntimeError, ImportError, OSError) as e:
        if os.environ.get("HF_LOGSCALE_DEBUG", "").lower() in ("1", "true", "yes"):
            raise
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        err.print(f"[red]Error:[/red] {escape(msg)}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except Exception as e:
        if hasattr(e, "show") and hasattr(e, "exit_code"):  # usage errors from typer / click
            e.show()
            sys.exit(e.exit_code)
        raise
    sys.exit(code if isinstance(code, int) else 0)
