"""The per-head law, tested directly: under critical:τ the top key's log-odds should move with ln(n / L) at slope
τ / τ_c − 1, with τ_c = ln L / G measured at L (docs/theory.md). Predicted: −1 at τ = 0, 0 at τ = τ_c.

For each testbed: G per head at L (the last 16 rows of each held-out window); then, at n = L, 2 L, 4 L, 8 L, 16 L,
the median log-odds of each head's top key over the last 16 rows of each window, under τ = 0, τ = 1 (logn) and
τ = τ_c of the layer (the median over its heads: the patch scales per layer, not per head); the slope of log-odds
against ln(n / L) by least squares over the five lengths, per head, beside the prediction τ / τ_c(head) − 1.

Writes docs/critical-slope/law/<testbed>.csv (one row per layer, head and arm) and law.md (per layer: medians over
heads of the measured and predicted slopes). Re-made by: python scripts/critical_law.py
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

import hf_logscale as hls
from hf_logscale.data.sources import load_documents
from hf_logscale.diagnostics import head_gaps, token_windows
from hf_logscale.models import train_length

OUT = Path(__file__).resolve().parents[1] / "docs" / "critical-slope" / "law"
MULTIPLES = (1, 2, 4, 8, 16)
TESTBEDS = {  # name -> (model, RoPE part of every arm)
    "yarn": ("reference", "yarn:factor=16,attention_factor=1"),
    "nope": ("reference:nope", None),
}
WINDOWS, ROWS = 5, 16


def arm(rope: str | None, scale: str) -> str:
    return f"{rope}+{scale}" if rope else scale


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    texts = [d.text for d in load_documents("sample")]
    summary = [
        "# The per-head law, measured",
        "",
        "Slope of the top key's log-odds against ln(n / L), n = L … 16 L, per head (medians over heads per layer);",
        "predicted τ / τ_c − 1 with τ_c = ln L / G measured at L. Re-made by `python scripts/critical_law.py`.",
        "",
    ]
    for name, (model_name, rope) in TESTBEDS.items():
        model, tok = hls.load(model_name)
        L = train_length(model).value
        at_l = head_gaps(model, torch.cat(token_windows(tok, texts, L, WINDOWS)), rows=ROWS, variant=arm(rope, "none"))
        tau_c = at_l.tau_c(L)  # [layers, heads]
        layer_tau = tau_c.median(-1).values
        per_layer = ";".join(f"{i}/tau={t:.4g}" for i, t in enumerate(layer_tau.tolist()))
        arms = {
            "tau=0": (arm(rope, "none"), torch.zeros_like(tau_c)),
            "tau=1": (arm(rope, "critical:tau=1"), torch.ones_like(tau_c)),
            "tau=tau_c(layer)": (
                arm(rope, f"critical:tau=1,per_layer={per_layer}"),
                layer_tau[:, None].expand_as(tau_c),
            ),
        }
        x = torch.tensor([math.log(m) for m in MULTIPLES], dtype=torch.float64)
        header = "layer,head,G,tau_c,arm,tau,predicted_slope,measured_slope,"
        lines = [header + ",".join(f"logodds_{m}L" for m in MULTIPLES)]
        table = [
            f"## {name}: {model_name}" + (f" with `{rope}`" if rope else "") + f", L = {L}",
            "",
            "| layer | τ_c (median head) | arm | predicted slope | measured slope | log-odds at L → 16 L |",
            "|---|---|---|---|---|---|",
        ]
        for label, (variant, tau) in arms.items():
            odds = []
            for m in MULTIPLES:
                ws = torch.cat(token_windows(tok, texts, m * L, WINDOWS))
                odds.append(head_gaps(model, ws, rows=ROWS, variant=variant).logodds)
            y = torch.stack(odds, -1)  # [layers, heads, lengths]
            xc = x - x.mean()
            slope = ((y - y.mean(-1, keepdim=True)) * xc).sum(-1) / (xc * xc).sum()
            predicted = tau / tau_c - 1
            for layer in range(y.shape[0]):
                for head in range(y.shape[1]):
                    lines.append(
                        f"{layer},{head},{at_l.G[layer, head]:.6g},{tau_c[layer, head]:.6g},{label},"
                        f"{tau[layer, head]:.6g},{predicted[layer, head]:.6g},{slope[layer, head]:.6g},"
                        + ",".join(f"{v:.6g}" for v in y[layer, head].tolist())
                    )
                med = y[layer].median(0).values
                table.append(
                    f"| {layer} | {tau_c[layer].median():.2f} | {label} | {predicted[layer].median():+.2f} | "
                    f"{slope[layer].median():+.2f} | {med[0]:+.2f} → {med[-1]:+.2f} |"
                )
        (OUT / f"{name}.csv").write_text("\n".join(lines) + "\n")
        summary += table + [""]
        print("\n".join(table), flush=True)
    (OUT / "law.md").write_text("\n".join(summary))


if __name__ == "__main__":
    main()
