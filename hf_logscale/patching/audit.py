"""What a patch did (``describe``) and proof that it is live (``verify``): data only, the CLI renders it."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..errors import UserError
from ..rope import attention_factor, rope_params
from .families import attention_layers, family_of, layer_window
from .install import PatchState, patch_state
from .rotary_state import rotary_snapshot

__all__ = ["PatchReport", "VerifyPlan", "VerifyReport", "describe", "verify", "verify_plan", "TABLE_MULTIPLES"]

TABLE_MULTIPLES = (0.5, 1, 2, 4, 8, 16)


@dataclass
class PatchReport:
    architecture: str
    model_type: str
    attn_implementation: str
    variant: str
    scheme: str
    num_layers: int
    patched_layers: list[int]
    windows: dict[int, int | None]  # patched layer -> sliding window (None: full attention)
    train_len: int
    train_len_source: str
    rope: str  # the rope type now in the config
    rope_attention_factor: float  # multiplies cos and sin; logits scale by its square
    # the architecture's own length scale (Ministral 3), and whether the patch switched it off in favour of s(n)
    native_scale: str | None = None
    native_replaced: bool = False
    layer_params: dict[int, dict] = field(default_factory=dict)  # layers with their own scheme parameters
    logit_notes: list[str] = field(default_factory=list)  # what the architecture itself does to the logits
    rows: list[dict[str, float]] = field(default_factory=list)  # n, s(n) per window, native, effective multiplier

    @property
    def compounding(self) -> bool:
        return abs(self.rope_attention_factor - 1.0) > 1e-12

    def __str__(self) -> str:
        """The report as plain text (``print(hls.describe(model))``): what is patched, then the multipliers."""
        patched = f"{len(self.patched_layers)} of {self.num_layers}"
        windows = sorted({w for w in self.windows.values() if w is not None})
        lines = [
            f"architecture     {self.architecture} ({self.model_type}, {self.num_layers} attention layers)",
            f"attention        {self.attn_implementation}",
            f"variant          {self.variant}",
            f"patched layers   {patched}" + (f"; sliding windows {', '.join(map(str, windows))}" if windows else ""),
            f"train length L   {self.train_len} ({self.train_len_source})",
            f"RoPE             {self.rope}, attention factor {self.rope_attention_factor:.4f}",
        ]
        if self.native_scale:
            lines.append(f"native scale     {self.native_scale}" + (" (replaced)" if self.native_replaced else ""))
        lines += [f"own logits       {note}" for note in self.logit_notes]
        keys = [k for k in self.rows[0] if k != "n"] if self.rows else []
        lines.append("n".rjust(9) + "n / L".rjust(8) + "".join(k.rjust(16) for k in keys))
        for row in self.rows:
            cells = "".join(f"{row[k]:16.4f}" for k in keys)
            lines.append(f"{row['n']:9d}{row['n'] / self.train_len:8g}{cells}")
        return "\n".join(lines)


def _state(model: torch.nn.Module) -> PatchState:
    state = patch_state(model)
    if state is None:
        raise UserError(f"{type(model).__name__} is not patched; call hf_logscale.patch(model, ...) first")
    return state


def describe(model: torch.nn.Module) -> PatchReport:
    """Architecture, backend, layers, windows, L and its source, RoPE factor, and s(n) at n = L/2 … 16L."""
    state = _state(model)
    layers = attention_layers(model)
    windows = {i: layer_window(m) for i, m in layers if i in state.layers}
    af = attention_factor(model)
    native = family_of(model).native_scale
    # while replaced, the config holds β = 0: describe the scale it had
    text = model.config.get_text_config()  # the language model's (an image-text model holds it as text_config)
    native_text = native.describe(text, state.native_saved) if native is not None else None
    native_live = native is not None and native.values(text) is not None
    L = state.train_len
    schemes = {i: state.layer_schemes.get(i, state.scheme) for i in state.layers}
    # layers or heads with their own parameters: the table gives min, median and max over them
    spread = len(set(schemes.values())) > 1 or any(sc.heads is not None for sc in schemes.values())
    rows = []
    for mult in TABLE_MULTIPLES:
        n = max(1, int(round(mult * L)))
        row: dict[str, float] = {"n": n}
        for w in sorted(set(windows.values()), key=lambda w: (w is not None, w or 0)):
            nn = torch.tensor([float(min(n, w) if w is not None else n)], dtype=torch.float64)
            s = torch.cat([sc.values(nn).flatten() for i, sc in schemes.items() if windows[i] == w])
            key = "s" if w is None else f"s@window{w}"
            if spread:
                row.update(
                    {f"{key}:min": float(s.min()), f"{key}:median": float(s.median()), f"{key}:max": float(s.max())}
                )
            else:
                row[key] = float(s[0])
        if native_live:
            row["native"] = native.factor(text, n)
        row["effective"] = af**2 * max(v for k, v in row.items() if k.startswith("s")) * row.get("native", 1.0)
        rows.append(row)
    rope_type = (rope_params(text) or {}).get("rope_type") or "default"  # the global layers'
    return PatchReport(
        architecture=(getattr(model.config, "architectures", None) or [type(model).__name__])[0],
        model_type=text.model_type,
        attn_implementation=f"{state.impl} → {state.base_impl}",
        variant=state.variant.label,
        scheme=state.scheme.name,
        num_layers=len(layers),
        patched_layers=list(state.layers),
        windows=windows,
        train_len=L,
        train_len_source=state.train_len_source,
        rope=str(rope_type),
        rope_attention_factor=af,
        native_scale=native_text,
        native_replaced=state.native_saved is not None,
        layer_params={i: p for i, p in state.variant.scale.layer_params.items() if i in state.layers},
        logit_notes=family_of(model).logit_notes(text),
        rows=rows,
    )


@dataclass
class VerifyPlan:
    positions: list[int]  # 0-based positions probed (n = position + 1): L/2 … 16L
    expected: dict[int, list[float]]  # layer -> s(n) the scheme gives at those positions (window applied)


@dataclass
class VerifyReport(VerifyPlan):
    seen: dict[int, list[float] | None]  # layer -> scales the wrapper applied (None: layer never called)
    ok: bool
    message: str


def verify_plan(model: torch.nn.Module) -> VerifyPlan:
    """What ``verify`` probes and expects, without running the model (works on the meta device)."""
    state = _state(model)
    layers = dict(attention_layers(model))
    positions = sorted({max(1, int(round(m * state.train_len))) - 1 for m in TABLE_MULTIPLES})
    n = torch.tensor([p + 1.0 for p in positions], dtype=torch.float64)
    expected = {}
    for i in state.layers:
        w = layer_window(layers[i])
        expected[i] = state.layer_schemes[i].values(n.clamp(max=w) if w else n).flatten().tolist()  # head-major
    return VerifyPlan(positions, expected)


@torch.no_grad()
def verify(model: torch.nn.Module) -> VerifyReport:
    """Run one forward pass over a few tokens placed at positions n = L/2 … 16L and check that every patched
    layer applied exactly the scales its scheme and window prescribe.

    Positions are passed explicitly, so the pass is short whatever L is. Rotary caches that depend on the
    largest position seen (dynamic NTK, LongRoPE) are restored afterwards."""
    state = _state(model)
    plan = verify_plan(model)
    positions, expected = plan.positions, plan.expected
    device = next(model.parameters()).device
    vocab = model.config.get_text_config().vocab_size
    ids = torch.randint(0, vocab, (1, len(positions)), generator=torch.Generator().manual_seed(0)).to(device)
    pos = torch.tensor([positions], device=device)
    restore = rotary_snapshot(model)
    state.scale.probe = {}
    try:
        model(input_ids=ids, position_ids=pos, use_cache=False)
        seen_raw = dict(state.scale.probe)
    finally:
        state.scale.probe = None
        restore()

    seen: dict[int, list[float] | None] = {}
    bad = []
    for i in state.layers:
        s = seen_raw.get(i)
        seen[i] = s.flatten().tolist() if s is not None else None
        if s is None:
            bad.append(f"layer {i} never called the wrapper")
            continue
        # seen values are the float32 (float64) roundings of the float64 expectation
        diff = max(abs(a - b) / max(1.0, abs(b)) for a, b in zip(seen[i], expected[i], strict=True))
        if not diff <= 1e-6:  # NaN anywhere fails too
            bad.append(f"layer {i} applied scales off by {diff:.2e}")
    if bad:
        return VerifyReport(positions, expected, seen, False, "; ".join(bad))
    # every layer called the wrapper with the expected scales; an identity variant (none, critical τ = 0, …)
    # expects s = 1 at every probed n and is live all the same
    scaled = any(abs(v - 1.0) > 0 for vals in seen.values() if vals for v in vals)
    what = "scaled queries seen" if scaled else "s = 1 at every probed n: an identity scale, logits unchanged"
    return VerifyReport(positions, expected, seen, True, f"{len(seen)} patched layers active: {what}")
