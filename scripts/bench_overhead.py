"""Patch overhead: patched vs unpatched forward time and one decode step, in one process, interleaved.

Llama config with hidden 512 and 8 layers (random weights, fixed seed), sdpa, float32. Forward passes at 2k and
8k tokens (``use_cache=False``, ``logits_to_keep=1`` so the LM head does not dominate) and one decode step on a
4k-token KV cache (cropped back after every step). Each repetition runs both models back to back, alternating
which goes first; the table reports medians and the ratio of medians. Targets: ≤ 1.02 forward,
≤ 1.03 decode.

Usage: python scripts/bench_overhead.py [--reps 7] [--lengths 2048,8192] [--cache 4096] [--out runs/bench]
"""

from __future__ import annotations

import argparse
import copy
import inspect
import json
import platform
import statistics
import time
from pathlib import Path

import torch
import transformers
from transformers import AutoModelForCausalLM, DynamicCache, LlamaConfig

import hf_logscale as hls


def build() -> torch.nn.Module:
    config = LlamaConfig(
        hidden_size=512,
        num_hidden_layers=8,
        num_attention_heads=8,
        num_key_value_heads=8,
        intermediate_size=1376,
        vocab_size=32000,
        max_position_embeddings=1024,
    )
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(config, attn_implementation="sdpa").eval()


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def interleave(fns: dict[str, callable], reps: int) -> dict[str, list[float]]:
    names = list(fns)
    for fn in fns.values():  # warm-up
        fn()
    times = {k: [] for k in names}
    for r in range(reps):
        for k in names if r % 2 == 0 else names[::-1]:
            times[k].append(timed(fns[k]))
    return times


@torch.inference_mode()
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--lengths", default="2048,8192")
    ap.add_argument("--cache", type=int, default=4096)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="runs/bench")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    plain = build()
    scaled = hls.patch(copy.deepcopy(plain), hls.LogScaleConfig("logn", train_len=1024))
    models = {"unpatched": plain, "patched": scaled}
    rows = []
    for T in [int(x) for x in args.lengths.split(",") if x.strip()]:
        ids = torch.randint(0, 32000, (1, T), generator=torch.Generator().manual_seed(T))
        fns = {k: (lambda m=m, ids=ids: m(ids, use_cache=False, logits_to_keep=1)) for k, m in models.items()}
        times = interleave(fns, args.reps * (3 if T <= 4096 else 1))
        rows.append((f"forward, {T} tokens", times))
        print(rows[-1][0], {k: f"{statistics.median(v) * 1e3:.1f} ms" for k, v in times.items()}, flush=True)

    prompt = torch.randint(0, 32000, (1, args.cache), generator=torch.Generator().manual_seed(1))
    step = torch.randint(0, 32000, (1, 1), generator=torch.Generator().manual_seed(2))
    fns = {}
    cache_kw = "cache" if "cache" in inspect.signature(plain.forward).parameters else "past_key_values"  # 5.24 rename
    for k, m in models.items():
        cache = DynamicCache()
        m(prompt, **{cache_kw: cache}, use_cache=True, logits_to_keep=1)
        pos = torch.tensor([[args.cache]])

        def decode(m=m, cache=cache, pos=pos):
            m(step, **{cache_kw: cache}, position_ids=pos, use_cache=True)
            cache.crop(-1)  # drop the new token: every step sees the same 4k cache

        fns[k] = decode
    times = interleave(fns, args.reps * 5)
    rows.append((f"decode step, {args.cache}-token cache", times))
    print(rows[-1][0], {k: f"{statistics.median(v) * 1e3:.2f} ms" for k, v in times.items()}, flush=True)

    cpu = platform.processor() or platform.machine()
    lines = [
        f"torch {torch.__version__}, transformers {transformers.__version__}, {cpu}, {args.threads} threads, float32, "
        f"sdpa, Llama hidden 512 × 8 layers; {args.reps} interleaved repetitions at 8k, {args.reps * 3} at 2k, "
        f"{args.reps * 5} for decode. Paired ratio: median over repetitions of patched / unpatched run back to back.",
        "",
        "| case | unpatched (median) | patched, logn (median) | ratio of medians | paired ratio |",
        "|---|---|---|---|---|",
    ]
    result = []
    for name, times in rows:
        a, b = statistics.median(times["unpatched"]), statistics.median(times["patched"])
        paired = statistics.median(p / u for p, u in zip(times["patched"], times["unpatched"], strict=True))
        lines.append(f"| {name} | {a * 1e3:.1f} ms | {b * 1e3:.1f} ms | {b / a:.3f} | {paired:.3f} |")
        result.append(
            {
                "case": name,
                "unpatched_s": times["unpatched"],
                "patched_s": times["patched"],
                "ratio_of_medians": b / a,
                "paired_ratio": paired,
            }
        )
    table = "\n".join(lines)
    print(table)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "overhead.md").write_text(table + "\n")
    (out / "overhead.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
