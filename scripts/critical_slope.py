"""Where is the best slope? The critical-scaling prediction on trained transformers.

The paper (Chen, Lin, Polyanskiy, Rigollet, ICLR 2026) predicts that once positions are not the problem, scaling
attention logits by γ·log n keeps attention working as n grows: too little scaling flattens attention, too much
freezes it, and the critical slope separates the two. In the ``critical`` scheme that slope is τ = 1. For each
model where positions extrapolate — the NoPE and p-RoPE reference models, the reference model trained with SSMax,
and the RoPE reference model with YaRN frequencies (attention factor 1) or with dynamic NTK — this script runs, with
the library only:

1. ``run_compare`` over critical τ ∈ {0, 0.25, 0.5, 0.75, 1, 1.25, 1.5, 2, 3} (for the SSMax-trained model:
   ``ssmax:tau=τ``, its own slope beyond L, τ = 1 being the SSMax it was trained with) plus ``ssmax``, ``llama4``
   and ``power:p=2``; perplexity with every token of the first two held-out books (Isaiah, Jeremiah;
   ``--documents``) scored once (sliding windows, stride n − 1) and passkey retrieval (generation and
   teacher-forced log p) at 2×, 4×, 8×, 16× L;
2. ``run_diagnose``: attention entropy vs n for the same variants;
3. the best τ per model and length with a paired bootstrap over perplexity windows (the same resampled windows for
   every τ), figures, ``report.md`` with a reading written from the numbers, and every record under ``--out``.

Usage: python scripts/critical_slope.py [--out docs/critical-slope] [--models nope,prope,ssmax,yarn,dynamic]
       python scripts/critical_slope.py --quick --models yarn --out /tmp/slope   # a smoke run of the pipeline
       python scripts/critical_slope.py --report-only   # figures and report again from the records
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from pathlib import Path

import torch

from hf_logscale.compare import run_compare, write_outputs
from hf_logscale.data.sources import load_documents
from hf_logscale.diagnostics import band_entropy, run_diagnose
from hf_logscale.evaluation import EvalSpec
from hf_logscale.models import load, reference_model, train_length
from hf_logscale.results import ResultStore, write_atomic
from hf_logscale.tables import mean_by
from hf_logscale.variants import parse_variant

TAUS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 3.0)
OTHERS = ("ssmax", "llama4", "power:p=2")
MULTIPLES = (2, 4, 8, 16)
# name -> (model, the τ family, RoPE setting put in front of every variant, what it is)
MODELS = {
    "nope": ("reference:nope", "critical", None, "NoPE reference model"),
    "prope": ("reference:prope", "critical", None, "p-RoPE reference model"),
    "ssmax": ("reference:ssmax", "ssmax", None, "RoPE reference model trained with SSMax"),
    "yarn": ("reference", "critical", "yarn:factor=16,attention_factor=1", "RoPE model + YaRN ×16 frequencies"),
    "dynamic": ("reference", "critical", "dynamic:factor=2", "RoPE model + dynamic NTK"),
}


def variant_specs(family: str, rope: str | None) -> list[tuple[float | None, str]]:
    """(τ or None, spec) for the sweep and the other schemes."""
    front = f"{rope}+" if rope else ""
    sweep = [(t, f"{front}{family}:tau={t:g}") for t in TAUS]
    others = [(None, f"{front}{s}") for s in OTHERS if not (family == "ssmax" and s == "ssmax")]
    return sweep + others


def run_model(name: str, out: Path, trials: int, documents: int, log) -> None:
    model_id, family, rope, _ = MODELS[name]
    model, tok = load(model_id)
    L = train_length(model).value
    lengths = tuple(m * L for m in MULTIPLES)
    variants = [parse_variant(s) for _, s in variant_specs(family, rope)]
    specs = [EvalSpec(task="ppl", lengths=(n,), mode="sliding", stride=n - 1, max_documents=documents) for n in lengths]
    specs.append(EvalSpec(task="passkey", lengths=lengths, trials=trials))
    folder = out / name
    t0 = time.perf_counter()
    with ResultStore(folder) as store:
        result = run_compare(model, tok, variants, specs, store, model_name=model_id, log=log)
        write_outputs(
            result,
            folder,
            model_name=model_id,
            train_len=L,
            command="python scripts/critical_slope.py",
            settings={"lengths": lengths, "passkey trials per depth": trials, "held-out books": documents},
        )
    log(f"{name}: matrix in {time.perf_counter() - t0:.0f} s")
    texts = [d.text for d in load_documents("sample")]
    diag = run_diagnose(model, tok, texts, variants, lengths, windows=2, gradients=False)
    diag.save(folder / "diagnostics.json")  # per-row entropies, tens of MB: kept out of git
    write_entropy_bands(folder, L, lengths)
    log(f"{name}: diagnostics done ({time.perf_counter() - t0:.0f} s in all)")


def write_entropy_bands(folder: Path, L: int, lengths: tuple[int, ...]) -> None:
    """entropy.json: mean attention entropy of rows seeing n ∈ (N/2, N] keys, per variant and N (all layers, and
    each layer), from diagnostics.json."""
    diag = json.loads((folder / "diagnostics.json").read_text())
    bands = {}
    for v, ent in diag["entropy"].items():
        e = torch.tensor(ent)
        bands[v] = {
            "all": {n: band_entropy(e, n) for n in [L, *lengths]},
            "layers": {n: [band_entropy(e, n, layer) for layer in range(e.shape[0])] for n in [L, *lengths]},
        }
    write_atomic(folder / "entropy.json", json.dumps(bands, indent=1))


# ---- analysis ---------------------------------------------------------------------------------------------------


def _records(folder: Path) -> list[dict]:
    return [json.loads(x) for x in (folder / "results.jsonl").read_text().splitlines()]


def analyse(name: str, out: Path, boot: int = 1000) -> dict:
    """Best τ per length (perplexity, passkey log p), bootstrap interval, entropy per τ and length."""
    _, family, rope, about = MODELS[name]
    specs = variant_specs(family, rope)
    label = {parse_variant(s).label: t for t, s in specs}
    records = _records(out / name)
    by = {(r["metric"], r["variant"], r["length"]): r for r in records if r["task"] == "ppl" and r["variant"] in label}
    lengths = sorted({r["length"] for r in records})
    sweep = [(t, v) for v, t in label.items() if t is not None]
    tf_logprob, accuracy = mean_by(records, "passkey", "tf_logprob"), mean_by(records, "passkey", "accuracy")
    rng = random.Random(0)
    result = {
        "model": name,
        "about": about,
        "lengths": lengths,
        "taus": [t for t, _ in sweep],
        "ppl": {},
        "best": {},
        "passkey": {},
        "others": {},
        "entropy": {},
        "books": {},
        "buckets": {},
        "entropy_layers": {},
    }
    for n in lengths:
        ppl = {t: by[("perplexity", v, n)]["value"] for t, v in sweep}
        result["ppl"][n] = ppl
        result["others"][n] = {v: by[("perplexity", v, n)]["value"] for v, t in label.items() if t is None}
        windows = {t: by[("nll", v, n)]["windows"] for t, v in sweep}
        k = len(windows[sweep[0][0]])
        best = []
        for _ in range(boot):  # paired: the same resampled windows for every τ
            idx = [rng.randrange(k) for _ in range(k)]
            nll = {t: sum(windows[t][i][1] for i in idx) / sum(windows[t][i][2] for i in idx) for t in ppl}
            best.append(min(nll, key=nll.get))
        best.sort()
        counts = {t: best.count(t) / boot for t in ppl}
        result["best"][n] = {
            "tau": min(ppl, key=ppl.get),
            "lo": best[int(0.05 * boot)],
            "hi": best[int(0.95 * boot) - 1],
            "share": counts,
        }
        tf = {t: tf_logprob[(v, n)] for t, v in sweep}
        acc = {t: accuracy[(v, n)] for t, v in sweep}
        result["passkey"][n] = {"tf_logprob": tf, "accuracy": acc}
        # per book: the same windows' sums, grouped by the document they come from
        docs = sorted({w[0] for w in windows[sweep[0][0]]})
        result["books"][n] = {
            d: min(
                ppl,
                key=lambda t: sum(w[1] for w in windows[t] if w[0] == d) / sum(w[2] for w in windows[t] if w[0] == d),
            )
            for d in docs
        }
        # per position of the scored token (the keys it sees): the loss curve's buckets
        curves = {t: by[("nll", v, n)]["curve"] for t, v in sweep}
        edges = curves[sweep[0][0]]["edges"]
        result["buckets"][n] = [
            (lo, hi, min((t for t in ppl if curves[t]["nll"][i] is not None), key=lambda t: curves[t]["nll"][i]))
            for i, (lo, hi) in enumerate(zip(edges[:-1], edges[1:], strict=True))
            if curves[sweep[0][0]]["nll"][i] is not None
        ]
    bands = json.loads((out / name / "entropy.json").read_text())
    for v, b in bands.items():
        if label.get(v) is not None:
            result["entropy"][label[v]] = {int(n): x for n, x in b["all"].items()}
            result["entropy_layers"][label[v]] = {int(n): x for n, x in b["layers"].items()}
    return result


def reading(results: list[dict]) -> list[str]:
    out = []
    for r in results:
        parts = []
        for n in r["lengths"]:
            b = r["best"][n]
            ppl = r["ppl"][n]
            gain = ppl[1.0] / ppl[0.0] - 1
            parts.append(
                f"{n // (r['lengths'][0] // 2)}×L: best τ = {b['tau']:g} (90 % bootstrap interval "
                f"{b['lo']:g}–{b['hi']:g}; τ = 1 {'inside' if b['lo'] <= 1 <= b['hi'] else 'outside'}), "
                f"τ = 1 vs τ = 0: {gain:+.1%} perplexity"
            )
        out.append(f"**{r['about']}** — " + "; ".join(parts) + ".")
        last = r["lengths"][-1]
        pk = r["passkey"][last]["tf_logprob"]
        best_pk = max(pk, key=pk.get)
        out.append(
            f"  Passkey at {last}: the teacher-forced log-probability of the key is highest at τ = {best_pk:g} "
            f"({pk[best_pk]:.2f} vs {pk[0.0]:.2f} at τ = 0); generation accuracy at τ = {best_pk:g}: "
            f"{r['passkey'][last]['accuracy'][best_pk]:.2f}."
        )
        layers = r["entropy_layers"]
        if layers:
            L = r["lengths"][0] // 2
            out.append("  " + _entropy_by_layer(layers, L, last))
        ent = r["entropy"]
        if ent:
            L = r["lengths"][0] // 2
            target = ent[0.0][L]
            closest = min(ent, key=lambda t: abs(ent[t][last] - target))
            out.append(
                f"  Attention entropy of rows seeing ~{last} keys equals the model's own level at L "
                f"({target:.2f} nats) closest at τ = {closest:g} ({ent[closest][last]:.2f}); τ = 0 leaves "
                f"{ent[0.0][last]:.2f}, τ = 3 gives {ent[3.0][last]:.2f}."
            )
    return out


def _entropy_by_layer(layers: dict, L: int, last: int) -> str:
    """Per layer, the τ (interpolated on the grid) at which the entropy of rows seeing ~``last`` keys returns to
    the layer's own level at L; and how close each layer is at L to uniform attention (ln of the keys seen)."""
    taus = sorted(layers)
    parts = []
    for layer in range(len(layers[taus[0]][L])):
        target = layers[0.0][L][layer]
        f = [layers[t][last][layer] - target for t in taus]
        cross = next((i for i in range(len(f) - 1) if f[i] == 0 or (f[i] > 0) != (f[i + 1] > 0)), None)
        if cross is None:
            at = "never on the grid"
        else:
            a, b = taus[cross], taus[cross + 1]
            at = f"τ ≈ {a + (b - a) * f[cross] / (f[cross] - f[cross + 1]):.2f}"
        uniform = math.log(0.75 * L)  # rows in the band (L/2, L] see about 3L/4 keys
        parts.append(f"layer {layer} {at} (at L {target:.2f} nats, {target / uniform:.0%} of uniform)")
    return f"Per layer, entropy at {last} keys back to its level at L: " + "; ".join(parts) + "."


def figures(results: list[dict], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    fig, axes = plt.subplots(2, len(results), figsize=(4.0 * len(results) + 0.8, 7.2), dpi=130, squeeze=False)
    for ax, pax, r in zip(axes[0], axes[1], results, strict=True):
        for i, n in enumerate(r["lengths"]):
            ppl, tf = r["ppl"][n], r["passkey"][n]["tf_logprob"]
            taus = sorted(ppl)
            label = f"{n} ({n // (r['lengths'][0] // MULTIPLES[0])}×L)"
            ax.plot(taus, [ppl[t] / ppl[0.0] for t in taus], marker="o", ms=3, color=f"C{i}", label=label)
            b = r["best"][n]
            ax.plot([b["tau"]], [ppl[b["tau"]] / ppl[0.0]], marker="*", ms=10, color=f"C{i}")
            pax.plot(taus, [tf[t] for t in taus], marker="o", ms=3, color=f"C{i}", label=label)
            top = max(tf, key=tf.get)
            pax.plot([top], [tf[top]], marker="*", ms=10, color=f"C{i}")
        for a in (ax, pax):
            a.axvline(1.0, color="0.3", ls="--", lw=1)
            a.grid(alpha=0.3)
        ax.text(1.0, 1.0, " τ = 1 (critical)", transform=ax.get_xaxis_transform(), va="top", fontsize=7)
        ax.set(title=r["about"], ylabel="perplexity / perplexity at τ = 0")
        ax.title.set_fontsize(8)
        pax.set(xlabel="τ (slope relative to critical)", ylabel="passkey: log p(key), teacher-forced")
    axes[0][-1].legend(fontsize=7, title="length", title_fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.suptitle("Perplexity (top), passkey log p (bottom) vs τ; ★ best", fontsize=10)
    fig.tight_layout()
    paths.append(out / "ppl_vs_tau.png")
    fig.savefig(paths[-1])
    plt.close(fig)

    taus = results[0]["taus"]
    grid = []
    for r in results:
        ppl = r["ppl"][r["lengths"][-1]]
        grid.append([math.log(ppl[t] / min(ppl.values())) for t in taus])
    fig, ax = plt.subplots(figsize=(7, 0.6 * len(results) + 1.6), dpi=130)
    im = ax.imshow(grid, cmap="viridis_r", aspect="auto", vmin=0)
    for i, row in enumerate(grid):
        for j, x in enumerate(row):
            ax.text(j, i, f"{math.exp(x):.2f}", ha="center", va="center", fontsize=7, color="white" if x > 0.3 else "k")
    ax.set_xticks(range(len(taus)), [f"{t:g}" for t in taus])
    ax.set_yticks(range(len(results)), [r["about"] for r in results], fontsize=7)
    ax.set(xlabel="τ", title="Perplexity at 16× L relative to the best τ of each model")
    fig.colorbar(im, ax=ax, label="ln(perplexity / best)")
    fig.tight_layout()
    paths.append(out / "heatmap_models_tau.png")
    fig.savefig(paths[-1])
    plt.close(fig)

    fig, axes = plt.subplots(1, len(results), figsize=(4.0 * len(results) + 0.8, 3.6), dpi=130, squeeze=False)
    for ax, r in zip(axes[0], results, strict=True):
        ent = r["entropy"]
        if not ent:
            continue
        L = r["lengths"][0] // 2
        ns = [L, *r["lengths"]]
        for j, t in enumerate(sorted(ent)):
            ax.plot(
                ns,
                [ent[t][n] for n in ns],
                marker=".",
                color=plt.cm.plasma(j / max(1, len(ent) - 1)),
                label=f"τ = {t:g}",
                lw=2.2 if t == 1.0 else 1.0,
            )
        ax.axhline(ent[0.0][L], color="0.3", ls="--", lw=1)
        ax.set_xscale("log", base=2)
        ax.set(title=r["about"], xlabel="keys seen n (rows with n ∈ (N/2, N])", ylabel="attention entropy (nats)")
        ax.title.set_fontsize(8)
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1))
    fig.suptitle("Attention entropy vs n per slope τ (dashed: level at L)", fontsize=10)
    fig.tight_layout()
    paths.append(out / "entropy_vs_n.png")
    fig.savefig(paths[-1])
    plt.close(fig)
    return paths


def best_table(results: list[dict]) -> list[str]:
    """Model × length: the perplexity-best τ with its 90 % paired-bootstrap interval, and the passkey-best τ."""
    multiples = [n // (r["lengths"][0] // MULTIPLES[0]) for r in results[:1] for n in r["lengths"]]
    lines = [
        "| model | best τ by | " + " | ".join(f"{m}× L" for m in multiples) + " |",
        "|---" * (len(multiples) + 2) + "|",
    ]
    for r in results:
        b = r["best"]
        cells = [f"{b[n]['tau']:g} [{b[n]['lo']:g}–{b[n]['hi']:g}]" for n in r["lengths"]]
        lines.append(f"| {r['about']} | perplexity | " + " | ".join(cells) + " |")
        tf = [r["passkey"][n]["tf_logprob"] for n in r["lengths"]]
        lines.append("| | passkey log p | " + " | ".join(f"{max(x, key=x.get):g}" for x in tf) + " |")
    return lines


def validity(results: list[dict]) -> list[str]:
    """Which testbeds have their positions fixed: perplexity at τ = 0 from the shortest to the longest length."""
    lines = [
        "| model | perplexity at τ = 0, shortest → longest length | ratio | positions fixed (ratio < 1.2) |",
        "|---|---|---|---|",
    ]
    for r in results:
        first, last = r["ppl"][r["lengths"][0]][0.0], r["ppl"][r["lengths"][-1]][0.0]
        fixed = "yes" if last / first < 1.2 else "no: β_n is not the lever here"
        lines.append(f"| {r['about']} | {first:.2f} → {last:.2f} | ×{last / first:.2f} | {fixed} |")
    return lines


def books_and_positions(results: list[dict]) -> list[str]:
    """Best τ per book beside the pooled one, and per position of the scored token at the longest length, with the
    multiplier s*(n) = 1 + τ·ln(n / L)/ln L that τ implies at the bucket's geometric middle."""
    lines = ["| model | length | pooled | per book |", "|---|---|---|---|"]
    for r in results:
        for n in r["lengths"]:
            books = " / ".join(f"{t:g}" for t in r["books"][n].values())
            lines.append(f"| {r['about']} | {n} | {r['best'][n]['tau']:g} | {books} |")
    lines += ["", "At the longest length, by the number of keys the scored token sees:", ""]
    lines += ["| model | keys seen | best τ | s*(n) at the middle |", "|---|---|---|---|"]
    for r in results:
        n = r["lengths"][-1]
        L = r["lengths"][0] // MULTIPLES[0]
        for lo, hi, t in r["buckets"][n]:
            if hi <= L:
                continue
            mid = math.sqrt(max(lo, 1) * hi)
            s_star = 1 + t * math.log(mid / L) / math.log(L)
            lines.append(f"| {r['about']} | ({lo}, {hi}] | {t:g} | {s_star:.3f} |")
    return lines


def report(results: list[dict], out: Path, paths: list[Path]) -> Path:
    lines = [
        "# Where is the best slope?",
        "",
        "Generated by `python scripts/critical_slope.py` from the records in this "
        "folder (one subfolder per model: results.jsonl, report.md, figures, diagnostics.json).",
        "",
        "## Reading",
        "",
        *[f"- {s}" if not s.startswith("  ") else s for s in reading(results)],
        "",
        "## Best τ",
        "",
        *best_table(results),
        "",
        "The bootstrap resamples windows of the scored books and one training seed: it says nothing about other "
        "books or seeds. Where β_n can be the lever at all:",
        "",
        *validity(results),
        "",
        "## Per book and per position",
        "",
        *books_and_positions(results),
        "",
        "## Perplexity by τ and length",
        "",
    ]
    for r in results:
        lines += [
            f"**{r['about']}** (★ best; bootstrap share of being best in brackets)",
            "",
            "| length | "
            + " | ".join(f"τ={t:g}" for t in r["taus"])
            + " | "
            + " | ".join(r["others"][r["lengths"][0]])
            + " |",
            "|---" * (len(r["taus"]) + len(r["others"][r["lengths"][0]]) + 1) + "|",
        ]
        for n in r["lengths"]:
            ppl, b = r["ppl"][n], r["best"][n]
            cells = [f"{'★' if t == b['tau'] else ''}{ppl[t]:.2f} ({b['share'][t]:.0%})" for t in r["taus"]]
            lines.append(
                f"| {n} | " + " | ".join(cells) + " | " + " | ".join(f"{x:.2f}" for x in r["others"][n].values()) + " |"
            )
        lines.append("")
    lines += ["## Passkey by τ and length", ""]
    for r in results:
        lines += [
            f"**{r['about']}**: teacher-forced log-probability of the key (nats; ★ highest) / generation accuracy",
            "",
            "| length | " + " | ".join(f"τ={t:g}" for t in r["taus"]) + " |",
            "|---" * (len(r["taus"]) + 1) + "|",
        ]
        for n in r["lengths"]:
            tf, acc = r["passkey"][n]["tf_logprob"], r["passkey"][n]["accuracy"]
            top = max(tf, key=tf.get)
            cells = [f"{'★' if t == top else ''}{tf[t]:.2f} / {acc[t]:.2f}" for t in r["taus"]]
            lines.append(f"| {n} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["## Figures", "", *[f"![{p.stem}]({p.name})" for p in paths], ""]
    path = out / "report.md"
    write_atomic(path, "\n".join(lines))
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="docs/critical-slope")
    ap.add_argument(
        "--models",
        default=",".join(MODELS),
        help=f"comma-separated, of {','.join(MODELS)}",
    )
    ap.add_argument("--trials", type=int, default=4, help="passkey prompts per (length, depth)")
    ap.add_argument("--documents", type=int, default=2, help="held-out books scored for perplexity (of 5)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--report-only", action="store_true")
    ap.add_argument("--quick", action="store_true", help="a smoke run: τ ∈ {0, 1, 2}, 2× and 4× L, one trial")
    args = ap.parse_args()
    if args.quick:
        global TAUS, OTHERS, MULTIPLES
        TAUS, OTHERS, MULTIPLES, args.trials = (0.0, 1.0, 2.0, 3.0), ("ssmax",), (2, 4), 1
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    names = [m.strip() for m in args.models.split(",") if m.strip()]
    for name in names:  # unknown names and untrained reference models fail now, not after hours of work
        if name not in MODELS:
            ap.error(f"unknown model {name!r}; known: {', '.join(MODELS)}")
        try:
            reference_model(MODELS[name][0])
        except (FileNotFoundError, ValueError) as err:
            ap.error(str(err))
    if not args.report_only:
        for name in names:
            run_model(name, out, args.trials, args.documents, lambda s: print(s, flush=True))
    results = [analyse(name, out) for name in names]
    write_atomic(out / "summary.json", json.dumps(results, indent=1, default=str))
    paths = figures(results, out)
    print(f"wrote {report(results, out, paths)}")


if __name__ == "__main__":
    main()
