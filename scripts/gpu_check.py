"""GPU check: 16-bit correctness, flash vs sdpa, and patch overhead at 16k–64k tokens, in one run of < 5 minutes.

A Llama 3.2 1B-class config (hidden 2048, 32 heads / 8 KV heads of 64, llama3 RoPE, vocabulary 128256) shrunk to
``--layers`` layers, random weights (seed 0), on one CUDA device:

1. correctness at ``--check-len`` tokens: logits of the bf16 model, unpatched and patched (critical τ = 2 with
   L = ``--train-len`` = 1024, so most positions are scaled), against the same weights in float32 patched the
   same way; ``verify`` on every backend; flash against sdpa (patched, bf16);
2. overhead: forward passes (``use_cache=False``, ``logits_to_keep=1``) at ``--lengths``, patched (logn) against
   unpatched, interleaved repetitions timed with CUDA events, per backend; medians and the paired ratio.

Flash backends are tried in order (flash_attention_2, flash_attention_3) and skipped with a note when the
package is missing. Results go to ``--out`` as gpu_check.json and gpu_check.md.

Usage: python scripts/gpu_check.py [--lengths 16384,32768,65536] [--layers 4] [--reps 5] [--out runs/gpu]
       python scripts/gpu_check.py --smoke   # tiny sizes on the CPU: checks the script itself
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from pathlib import Path

import torch
import transformers
from transformers import AutoModelForCausalLM, LlamaConfig

import hf_logscale as hls


def build(layers: int, smoke: bool, dtype: torch.dtype, attn: str, device: str) -> torch.nn.Module:
    size = (
        dict(hidden_size=64, intermediate_size=128, num_attention_heads=4, num_key_value_heads=2, vocab_size=256)
        if smoke
        else dict(
            hidden_size=2048, intermediate_size=8192, num_attention_heads=32, num_key_value_heads=8, vocab_size=128256
        )
    )
    config = LlamaConfig(
        **size,
        num_hidden_layers=layers,
        max_position_embeddings=131072,
        rms_norm_eps=1e-5,
        tie_word_embeddings=True,
        rope_scaling={
            "rope_type": "llama3",
            "factor": 32.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192,
        },
        rope_theta=500000.0,
    )
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, attn_implementation="sdpa")
    model = model.to(device=device, dtype=dtype).eval()
    if attn != "sdpa":
        # the model is built with sdpa and switched, so every backend holds the same weights
        model.set_attn_implementation(attn)
    return model


def backends(device: str) -> list[str]:
    """sdpa, plus each flash implementation whose package imports here."""
    found = ["sdpa"]
    if device == "cuda":
        from transformers.utils import is_flash_attn_2_available, is_flash_attn_3_available

        if is_flash_attn_2_available():
            found.append("flash_attention_2")
        if is_flash_attn_3_available():
            found.append("flash_attention_3")
    return found


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).abs().max() / b.float().abs().max())


@torch.inference_mode()
def correctness(args, device: str, impls: list[str]) -> dict:
    ids = torch.randint(
        0, 256 if args.smoke else 128256, (1, args.check_len), generator=torch.Generator().manual_seed(1)
    )
    ids = ids.to(device)
    scheme = hls.LogScaleConfig("critical", train_len=args.train_len, params={"tau": 2.0})
    ref = build(args.layers, args.smoke, torch.float32, "sdpa", device)
    want_plain = ref(ids, use_cache=False).logits.float()
    hls.patch(ref, scheme)
    want = ref(ids, use_cache=False).logits.float()
    del ref
    out: dict = {"length": args.check_len, "scheme": scheme.text}
    patched_logits = {}
    for impl in impls:
        model = build(args.layers, args.smoke, torch.bfloat16, impl, device)
        plain = model(ids, use_cache=False).logits
        hls.patch(model, scheme)
        got = model(ids, use_cache=False).logits
        check = hls.verify(model)
        patched_logits[impl] = got
        out[impl] = {
            "bf16_vs_fp32_unpatched": rel(plain, want_plain),
            "bf16_vs_fp32_patched": rel(got, want),
            "patch_changes_logits_by": rel(got, plain),
            "verify": check.message if check.ok else f"FAILED: {check.message}",
        }
        print(impl, out[impl], flush=True)
        del model
    for impl in impls[1:]:
        out[f"{impl}_vs_sdpa_patched"] = rel(patched_logits[impl], patched_logits["sdpa"])
    return out


def overhead(args, device: str, impls: list[str]) -> list[dict]:
    rows = []
    for impl in impls:
        plain = build(args.layers, args.smoke, torch.bfloat16, impl, device)
        scaled = hls.patch(copy.deepcopy(plain), hls.LogScaleConfig("logn", train_len=args.train_len))
        for T in args.lengths:
            ids = torch.randint(0, 256 if args.smoke else 128256, (1, T), generator=torch.Generator().manual_seed(T))
            ids = ids.to(device)
            if device == "cuda":
                torch.cuda.reset_peak_memory_stats()
            fns = {
                name: (lambda m=m, ids=ids: m(ids, use_cache=False, logits_to_keep=1))
                for name, m in (("unpatched", plain), ("patched", scaled))
            }
            times = interleave(fns, args.reps, device)
            a, b = statistics.median(times["unpatched"]), statistics.median(times["patched"])
            paired = statistics.median(p / u for p, u in zip(times["patched"], times["unpatched"], strict=True))
            peak = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None
            rows.append(
                {
                    "backend": impl,
                    "tokens": T,
                    "unpatched_ms": a * 1e3,
                    "patched_ms": b * 1e3,
                    "ratio_of_medians": b / a,
                    "paired_ratio": paired,
                    "peak_gib": peak,
                }
            )
            print(rows[-1], flush=True)
        del plain, scaled
        if device == "cuda":
            torch.cuda.empty_cache()
    return rows


@torch.inference_mode()
def interleave(fns: dict, reps: int, device: str) -> dict[str, list[float]]:
    names = list(fns)
    for fn in fns.values():  # warm-up (kernels, allocator)
        fn()
    times = {k: [] for k in names}
    for r in range(reps):
        for k in names if r % 2 == 0 else names[::-1]:
            times[k].append(_timed(fns[k], device))
    return times


def _timed(fn, device: str) -> float:
    if device != "cuda":
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()
    start.record()
    fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / 1e3


def report(result: dict) -> str:
    env = result["environment"]
    lines = [
        f"# GPU check: {env['device_name']}",
        "",
        f"torch {env['torch']}, transformers {env['transformers']}, hf-logscale {env['hf_logscale']}; "
        f"Llama 1B-class config, {result['layers']} layers, bf16, random weights.",
        "",
        f"## Correctness at {result['correctness']['length']} tokens ({result['correctness']['scheme']}, "
        "), max relative error of the logits against float32",
        "",
        "| backend | bf16 unpatched | bf16 patched | patch changes logits by | verify |",
        "|---|---|---|---|---|",
    ]
    for impl in result["backends"]:
        c = result["correctness"][impl]
        lines.append(
            f"| {impl} | {c['bf16_vs_fp32_unpatched']:.2e} | {c['bf16_vs_fp32_patched']:.2e} | "
            f"{c['patch_changes_logits_by']:.2e} | {c['verify']} |"
        )
    for impl in result["backends"][1:]:
        lines.append(f"\n{impl} vs sdpa, patched: {result['correctness'][f'{impl}_vs_sdpa_patched']:.2e}")
    lines += [
        "",
        f"## Overhead (logn, {result['reps']} interleaved repetitions, {result['timer']})",
        "",
        "| backend | tokens | unpatched | patched | ratio of medians | paired ratio | peak GiB |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in result["overhead"]:
        peak = f"{r['peak_gib']:.1f}" if r["peak_gib"] is not None else "—"
        lines.append(
            f"| {r['backend']} | {r['tokens']} | {r['unpatched_ms']:.1f} ms | {r['patched_ms']:.1f} ms | "
            f"{r['ratio_of_medians']:.3f} | {r['paired_ratio']:.3f} | {peak} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lengths", default="16384,32768,65536")
    ap.add_argument("--check-len", type=int, default=4096)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--train-len", type=int, default=1024, help="L of the patches (short: long inputs are scaled)")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU (checks the script, not the GPU)")
    ap.add_argument("--out", default="runs/gpu")
    args = ap.parse_args()
    args.lengths = [int(x) for x in args.lengths.split(",") if x.strip()]
    if args.smoke:
        args.lengths, args.check_len, args.layers, args.reps, args.train_len = [512, 1024], 256, 2, 2, 64
    elif not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run on a GPU, or pass --smoke to check the script on the CPU")
    device = "cpu" if args.smoke else "cuda"
    t0 = time.perf_counter()
    impls = backends(device)
    result = {
        "environment": {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "hf_logscale": hls.__version__,
            "device_name": torch.cuda.get_device_name() if device == "cuda" else "CPU (smoke)",
        },
        "layers": args.layers,
        "reps": args.reps,
        "timer": "CUDA events" if device == "cuda" else "perf_counter",
        "backends": impls,
        "correctness": correctness(args, device, impls),
        "overhead": overhead(args, device, impls),
    }
    result["seconds"] = time.perf_counter() - t0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu_check.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "gpu_check.md").write_text(report(result))
    print(report(result))
    print(f"{result['seconds']:.0f} s; wrote {out / 'gpu_check.json'} and {out / 'gpu_check.md'}")


if __name__ == "__main__":
    main()
