"""The real-model table from the committed records of ``scripts/real_model.sh``: docs/real-model/table.md, a figure,
and the README block between ``<!-- real-model:begin -->`` and ``<!-- real-model:end -->`` (rewritten in place).

Per variant: perplexity over the first n tokens of each of the three books at n = L and 2 L (pooled over tokens),
the perplexity of the tokens beyond L alone (positions L+1 … 2L, from the per-position curve), the per-book
perplexities at 2 L and in how many books the variant beats the unscaled model there; passkey accuracy (greedy
answer) and the mean teacher-forced log-probability of the key over the prompts, at L and 2 L. A variant is compared
book by book with its base — the same RoPE setting without the scheme (``none`` for the rest) — and counts as
better only if it is lower in every book (three books: no interval is claimed).

Usage: python scripts/real_model_table.py [--records docs/real-model] [--readme README.md]
"""

from __future__ import annotations

import argparse
import json
import math
from collections import defaultdict
from pathlib import Path

from hf_logscale.data.sample import sample_corpus

BEGIN, END = "<!-- real-model:begin -->", "<!-- real-model:end -->"


def _records(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _short(label: str) -> str:
    return label.replace("yarn:attention_factor=1.0,factor=2.0", "freq2").replace("yarn:factor=2.0", "yarn:factor=2")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=Path, default=Path("docs/real-model"))
    ap.add_argument("--readme", type=Path, default=Path("README.md"))
    args = ap.parse_args()
    ppl = [r for r in _records(args.records / "ppl" / "results.jsonl") if r["metric"] == "nll" and r["status"] == "ok"]
    keys = _records(args.records / "passkey" / "results.jsonl")
    if not ppl:
        raise SystemExit(f"no perplexity records under {args.records}/ppl: run scripts/real_model.sh first")
    L = ppl[0]["train_len"]
    variants = list(dict.fromkeys(r["variant"] for r in ppl))
    lengths = sorted({r["length"] for r in ppl})
    long = max(lengths)
    cell = {(r["variant"], r["length"]): r for r in ppl}
    held_out = [d.name for d in sample_corpus("heldout")]
    books = {i: held_out[i] for r in ppl for i, _, _ in r["windows"]}

    def doc_ppl(r):
        return {i: math.exp(s / t) for i, s, t in r["windows"]}

    def beyond(r):  # tokens at positions > L: buckets of the per-position curve whose lower edge is ≥ L
        c = r["curve"]
        pairs = [(nll, t) for lo, nll, t in zip(c["edges"], c["nll"], c["tokens"], strict=False) if lo >= L]
        total = sum(t for _, t in pairs)
        return math.exp(sum(n * t for n, t in pairs) / total) if total else float("nan")

    pk: dict[tuple[str, int], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in keys:
        if r["status"] == "ok":
            pk[(r["variant"], r["length"])][r["metric"]].append(r["value"])

    def base(v: str) -> str:  # what a variant adds to: its RoPE part for a scheme on new frequencies, else none
        return v.split("+")[0] if "+" in v else "none"

    head = (
        "| variant | " + " | ".join(f"ppl {n}" for n in lengths) + f" | ppl beyond L ({L + 1}–{long}) | "
        f"per book at {long} | lower than its base in | passkey acc {'/'.join(map(str, lengths))} | key log p "
        f"{'/'.join(map(str, lengths))} |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for v in variants:
        row = [f"`{_short(v)}`"]
        row += [f"{math.exp(cell[(v, n)]['value']):.2f}" if (v, n) in cell else "—" for n in lengths]
        if (v, long) in cell:
            docs = doc_ppl(cell[(v, long)])
            row.append(f"{beyond(cell[(v, long)]):.2f}")
            row.append(" / ".join(f"{docs[i]:.2f}" for i in sorted(docs)))
            ref = cell.get((base(v), long))
            if v == "none" or ref is None:
                row.append("—")
            else:
                theirs = doc_ppl(ref)
                wins = sum(docs[i] < theirs[i] for i in docs)
                row.append(f"{wins} of {len(docs)} (`{_short(base(v))}`)")
        else:
            row += ["—", "—", "—"]
        for metric, fmt in (("accuracy", "{:.2f}"), ("tf_logprob", "{:.1f}")):
            vals = [pk[(v, n)].get(metric) for n in lengths]
            row.append(" / ".join(fmt.format(sum(x) / len(x)) if x else "—" for x in vals))
        lines.append("| " + " | ".join(row) + " |")
    prompts = {len(pk[k].get("accuracy", [])) for k in pk}  # one record per depth, each the mean over its trials
    note = (
        f"SmolLM2-135M-Instruct (GGUF Q4_1, dequantised, float32), L = {L}; perplexity on the first n tokens of "
        f"{', '.join(books[i] for i in sorted(books))} (King James Bible; per-book values in that order); passkey: "
        f"{'/'.join(map(str, sorted(prompts))) or 'no'} prompt(s) per (variant, length), depths 0.25/0.5/0.75. "
        "`freq2` = `yarn:factor=2,attention_factor=1` (YaRN's frequencies without its temperature)."
    )
    table = "\n".join(lines)
    (args.records / "table.md").write_text(f"{note}\n\n{table}\n")
    text = args.readme.read_text()
    if BEGIN in text and END in text:
        start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
        args.readme.write_text(text[:start] + "\n" + table + "\n" + text[end:])
    print(note + "\n\n" + table)


if __name__ == "__main__":
    main()
