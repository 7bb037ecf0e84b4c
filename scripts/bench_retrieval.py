"""Retrieval cost against prefill: one passkey cell (generation + teacher forcing, as the evaluator scores it) vs
one plain forward pass over the same prompts (the model's own prefill, ``logits_to_keep=1``), interleaved, medians.

Target: the evaluation within 1.2× of the prefill it cannot avoid.

Usage: python scripts/bench_retrieval.py [--model reference] [--lengths 1024,4096] [--trials 10] [--reps 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from hf_logscale.evaluation import passkey, passkey_prompts
from hf_logscale.evaluation.batching import input_device
from hf_logscale.models import load


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


@torch.inference_mode()
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None)
    ap.add_argument("--lengths", default="1024,4096")
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model, tok = load(args.model)
    print("| length | prompts | passkey cell (median) | prefill (median) | ratio |\n|---|---|---|---|---|")
    for n in [int(x) for x in args.lengths.split(",")]:
        ids = torch.tensor([p.input_ids for p in passkey_prompts(tok, n, 0.5, args.trials)], device=input_device(model))
        fns = {
            "cell": lambda n=n: passkey(model, tok, n, 0.5, trials=args.trials),
            "prefill": lambda ids=ids: model(ids, use_cache=False, logits_to_keep=1),
        }
        for fn in fns.values():
            fn()  # warm-up
        times = {k: [] for k in fns}
        for r in range(args.reps):
            for k in fns if r % 2 == 0 else list(fns)[::-1]:
                times[k].append(timed(fns[k]))
        cell, pre = statistics.median(times["cell"]), statistics.median(times["prefill"])
        print(f"| {n} | {args.trials} | {cell:.2f} s | {pre:.2f} s | {cell / pre:.2f} |", flush=True)


if __name__ == "__main__":
    main()
