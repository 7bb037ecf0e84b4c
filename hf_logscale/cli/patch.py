"""``hf-logscale schemes`` and ``hf-logscale patch``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..errors import UserError
from .common import load_model
from .options import AttnOpt, DeviceOpt, DType, DTypeOpt, ModelOpt, parse_layers
from .render import out, print_patch_report

__all__ = ["patch", "schemes"]


def schemes() -> None:
    """List every β_n scheme: formula, parameters with defaults and ranges, origin.

    Example: hf-logscale schemes
    """
    from rich.table import Table

    from ..schemes import SCHEMES
    from ..variants import recipe_names

    table = Table(title="β_n schemes: s(n) multiplies the logits of a query that sees n keys (L = train_len)")
    for col in ("scheme", "s(n)", "parameters (default, range)", "origin"):
        table.add_column(col, overflow="fold")
    for name, cls in SCHEMES.items():
        params = [
            f"{f.name}={'model config' if f.name == 'train_len' else f.default} ({f.metadata['range']})"
            for f in cls.params()
        ]
        table.add_row(name, cls.formula, "\n".join(params) or "—", cls.origin)
    out.print(table)
    out.print("Recipes (use as --recipe NAME or variant @NAME): " + ", ".join(recipe_names()))


def patch(
    model_name: ModelOpt = None,
    scheme: Annotated[str | None, typer.Option(help="β_n scheme name (see `hf-logscale schemes`).")] = None,
    train_len: Annotated[int | None, typer.Option(help="L; default: resolved for the model (printed).")] = None,
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
    from ..models import check_save_dir, save_patched
    from ..patching import patch as apply
    from ..patching.audit import describe, verify
    from ..variants import variant_from_options

    if merge and out_dir is None:
        raise UserError("--merge needs --out DIR")
    v = variant_from_options(
        scheme=scheme, variant=variant, recipe=recipe, train_len=train_len, tau=tau, params=param or []
    )
    layer_ids = parse_layers(layers)  # checked before the (slow) model load
    if out_dir is not None:
        check_save_dir(out_dir)
    model, tok, _ = load_model(model_name, dtype, device, attn)
    apply(model, v, layers=layer_ids)
    print_patch_report(describe(model))
    check = verify(model)
    if not check.ok:
        out.print(f"[red]✗ verification failed[/red]: {check.message}")
        raise typer.Exit(1)
    probed = ", ".join(str(p + 1) for p in check.positions)
    out.print(f"[green]✓ verified[/green]: one forward pass at n = {probed} — {check.message}")
    if out_dir is not None:
        path = save_patched(model, out_dir, tok, merge=merge)
        size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
        kind = "merged model" if merge else "patched-model folder (no weights)"
        out.print(
            f"Wrote {kind} to {path} ({size / 2**20:.2f} MiB); load it with hls.load({str(path)!r}) or --model {path}"
        )
