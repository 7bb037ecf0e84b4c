"""Cost of the patch on a real model: time and peak memory of one perplexity cell and one passkey cell, patched vs
unpatched, in one process, interleaved.

The model (default SmolLM2-135M-Instruct, float32, sdpa) is loaded once. At each length: a perplexity cell (the
first n tokens of Isaiah, every token scored, chunked loss: ``hf_logscale.evaluation.perplexity``) and a passkey cell
(one prompt of exactly n tokens at depth 0.5, generation + teacher-forced scoring: ``hf_logscale.evaluation.passkey``).
Each repetition runs both sides back to back, alternating which goes first; the patched side applies
``--variant`` (default ``critical:tau=1``: the scale is live at every n > L) with the model's own RoPE, so the
difference is the patch alone. Peak memory is the resident-set high-water mark above the resident set before the
call, reset before each call (Linux ``/proc/self/clear_refs``, after ``malloc_trim``). The table reports medians
and patched / unpatched ratios; both sides must give the same numbers at n ≤ L and finite ones beyond.

Usage: python scripts/bench_real_model.py [--model smollm2-135m] [--lengths 8192,16384] [--reps 3]
       [--out runs/bench_real_model.md]
"""

from __future__ import annotations

import argparse
import ctypes
import functools
import gc
import json
import platform
import statistics
import time
from pathlib import Path

import torch
import transformers

import hf_logscale as hls
from hf_logscale.data.sample import sample_corpus
from hf_logscale.evaluation import passkey, perplexity


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(field)


_LIBC = ctypes.CDLL("libc.so.6")


def measure(fn) -> tuple[float, int, float]:
    """(seconds, peak extra bytes, value) of one call."""
    gc.collect()
    _LIBC.malloc_trim(0)  # hand freed memory back, so the next call's peak is its own
    Path("/proc/self/clear_refs").write_text("5")  # reset the high-water mark to the current resident set
    before = _status("VmRSS")
    start = time.perf_counter()
    value = fn()
    seconds = time.perf_counter() - start
    return seconds, _status("VmHWM") - before, value


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--variant", default="critical:tau=1")
    ap.add_argument("--lengths", default="8192,16384")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path("runs/bench_real_model.md"))
    args = ap.parse_args()
    lengths = [int(x) for x in args.lengths.split(",")]
    model, tok = hls.load(args.model, dtype="float32", attn_implementation="sdpa")
    L = hls.models.train_length(model).value
    book = next(d.text for d in sample_corpus("heldout") if d.name == "Isaiah")
    ids = tok(book, add_special_tokens=False)["input_ids"]

    cells = {
        "ppl": lambda n: perplexity(model, tok, [ids[:n]], n, batch_size=1).nll,
        "passkey": lambda n: passkey(model, tok, n, 0.5, trials=1, batch_size=1).trials[0].tf_logprob,
    }
    rows, raw = [], []
    for n in lengths:
        for task, cell in cells.items():
            seen: dict[str, list[tuple[float, int, float]]] = {"unpatched": [], "patched": []}
            cell(min(n, 512))  # warm-up, not measured
            for rep in range(args.reps):
                order = ("unpatched", "patched") if rep % 2 == 0 else ("patched", "unpatched")
                for side in order:
                    call = functools.partial(cell, n)
                    if side == "patched":
                        with hls.patched(model, args.variant):
                            seen[side].append(measure(call))
                    else:
                        seen[side].append(measure(call))
                    print(f"n={n} {task} rep {rep} {side}: {seen[side][-1][0]:.1f} s", flush=True)
            t = {s: statistics.median(x[0] for x in v) for s, v in seen.items()}
            m = {s: statistics.median(x[1] for x in v) for s, v in seen.items()}
            values = {s: v[0][2] for s, v in seen.items()}
            rows.append((n, task, t, m, values))
            raw.append({"n": n, "task": task, "runs": seen})
    lines = [
        f"# Patch cost on {args.model} (L = {L}), `{args.variant}` vs unpatched",
        "",
        f"torch {torch.__version__}, transformers {transformers.__version__}, "
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads; "
        f"medians of {args.reps} interleaved repetitions; "
        f"`python scripts/bench_real_model.py --model {args.model} --lengths {args.lengths} --reps {args.reps}`",
        "",
        "| n | cell | unpatched s | patched s | time ratio | unpatched peak MiB | patched peak MiB | memory ratio "
        "| value unpatched | value patched |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for n, task, t, m, v in rows:
        lines.append(
            f"| {n} | {task} | {t['unpatched']:.1f} | {t['patched']:.1f} | {t['patched'] / t['unpatched']:.3f} | "
            f"{m['unpatched'] / 2**20:.0f} | {m['patched'] / 2**20:.0f} | "
            f"{m['patched'] / max(m['unpatched'], 1):.3f} | {v['unpatched']:.4f} | {v['patched']:.4f} |"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    args.out.with_suffix(".json").write_text(json.dumps(raw, indent=1) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
