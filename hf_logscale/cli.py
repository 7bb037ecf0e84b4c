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
        "flex_attention (default: transformers'; flash_attention_* is not supported yet).",
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
    for k, v in rows:
        info.add_row(k, v)
    out.print(info)
    table = Table(title="Effective logit multiplier")
    keys = [k for k in r.rows[0] if k != "n"]
    table.add_column("n", justify="right")
    table.add_column("n / L", justify="right")
    for k in keys:
        label = {"s": "s(n)", "effective": "× RoPE factor² = effective"}.get(
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
