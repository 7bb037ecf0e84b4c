"""Benchmark: the forward-time effect of computing s(n) once per forward (the scale cache shared by every layer,
keyed by the scheme's value) against once per layer per forward (a cache no layer shares).

One process, the two settings interleaved, ``--reps`` forward passes each after a warm-up; medians, and the
patched-over-unpatched time ratio for both. The logits of both settings are compared (they must be equal).

Usage: python scripts/bench_scale_cache.py [--model reference|smollm2-135m|PATH] [--length 2048] [--reps 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import hf_logscale as hls
from hf_logscale.patching.attention import ScaleState


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="reference")
    ap.add_argument("--length", type=int, default=2048)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--scheme", default="logn")
    args = ap.parse_args()

    model, tok = hls.load(args.model, dtype="float32")
    torch.manual_seed(0)
    x = torch.randint(0, model.config.vocab_size, (1, args.length))
    shared = ScaleState.scales

    def per_layer(self, *a, **k):  # every call computes: no layer reuses another's scales
        self._cache.clear()
        return shared(self, *a, **k)

    def forward() -> tuple[float, torch.Tensor]:
        t0 = time.perf_counter()
        with torch.inference_mode():
            logits = model(x, use_cache=False).logits
        return time.perf_counter() - t0, logits

    times: dict[str, list[float]] = {"unpatched": [], "shared cache": [], "per-layer": []}
    logits: dict[str, torch.Tensor] = {}
    hls.patch(model, args.scheme)
    for rep in range(args.reps + 1):  # the first round warms up
        for name in times:
            if name == "unpatched":
                hls.unpatch(model)
            ScaleState.scales = per_layer if name == "per-layer" else shared
            t, logits[name] = forward()
            ScaleState.scales = shared
            if name == "unpatched":
                hls.patch(model, args.scheme)
            if rep:
                times[name].append(t)
    same = torch.equal(logits["shared cache"], logits["per-layer"])
    base = statistics.median(times["unpatched"])
    print(
        f"{args.model}, n = {args.length}, {model.config.num_hidden_layers} layers, scheme {args.scheme}, "
        f"{args.reps} reps, torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    for name, ts in times.items():
        m = statistics.median(ts)
        print(f"{name:>13}: median {m * 1000:8.1f} ms  (×{m / base:.3f} of unpatched; min {min(ts) * 1000:.1f})")
    print(f"logits equal (shared vs per-layer): {same}")


if __name__ == "__main__":
    main()
