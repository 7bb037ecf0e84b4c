"""Benchmark: vLLM throughput with the hf-logscale plugin's scaling on, against the same model served plain.

Two folders of the same weights: one merged-saved under ``--variant`` (its config carries the ``logscale`` entry),
one without the entry (plain vLLM: the plugin wraps nothing). Both engines run in this process; the two
workloads alternate between them for ``--reps`` rounds after a warm-up, medians reported:
- prefill: ``--batch`` prompts of ``--prompt-len`` tokens, one output token each (prompt tokens per second);
- decode: ``--batch`` prompts of 256 tokens, ``--decode`` greedy tokens each (output tokens per second).

Runs where vLLM runs: the CPU build here (``.venv-vllm``), or vLLM on a GPU machine with hf-logscale installed.

Usage: python scripts/bench_vllm.py [--model smollm2-135m|PATH|HUB_ID] [--variant logn:train_len=512]
       [--prompt-len 2048] [--batch 8] [--decode 128] [--reps 3] [--dtype float32] [--out FILE.md]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("VLLM_ALLOW_LONG_MAX_MODEL_LEN", "1")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")  # GiB per engine on the CPU build


def folders(model: str, variant: str, dtype: str, root: Path) -> tuple[Path, Path]:
    import hf_logscale as hls

    net, tok = hls.load(model, dtype=dtype)
    patched, plain = root / "patched", root / "plain"
    hls.patch(net, variant)
    hls.save_patched(net, patched, tok, merge=True)
    hls.patch(net, "none")
    hls.save_patched(net, plain, tok, merge=True)
    config = json.loads((plain / "config.json").read_text())
    del config["logscale"]  # no entry: vLLM as installed
    (plain / "config.json").write_text(json.dumps(config, indent=2))
    return patched, plain


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--variant", default="logn:train_len=512")
    ap.add_argument("--prompt-len", type=int, default=2048)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--decode", type=int, default=128)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()

    import torch
    import vllm
    from vllm import LLM, SamplingParams

    with tempfile.TemporaryDirectory() as tmp:
        patched, plain = folders(args.model, args.variant, args.dtype, Path(tmp))
        max_len = args.prompt_len + args.decode + 1
        engines = {
            name: LLM(model=str(path), dtype=args.dtype, max_model_len=max_len, seed=0)
            for name, path in (("plain", plain), ("patched", patched))
        }
        g = torch.Generator().manual_seed(0)
        vocab = 1000  # ordinary token ids, the same for both engines
        long = [torch.randint(10, vocab, (args.prompt_len,), generator=g).tolist() for _ in range(args.batch)]
        short = [torch.randint(10, vocab, (256,), generator=g).tolist() for _ in range(args.batch)]
        one = SamplingParams(max_tokens=1)
        many = SamplingParams(max_tokens=args.decode, temperature=0.0, ignore_eos=True)
        times: dict[tuple[str, str], list[float]] = {}
        for rep in range(args.reps + 1):  # round 0 warms up
            for name, llm in engines.items():
                for work, prompts, params in (("prefill", long, one), ("decode", short, many)):
                    t0 = time.perf_counter()
                    llm.generate([{"prompt_token_ids": p} for p in prompts], params, use_tqdm=False)
                    if rep:
                        times.setdefault((name, work), []).append(time.perf_counter() - t0)
    tokens = {"prefill": args.batch * args.prompt_len, "decode": args.batch * args.decode}
    lines = [
        f"vLLM {vllm.__version__}, torch {torch.__version__}, {args.model} ({args.dtype}), variant "
        f"`{args.variant}`, batch {args.batch}, prompt {args.prompt_len}, decode {args.decode}, {args.reps} reps",
        "",
        "| workload | plain tok/s | patched tok/s | patched / plain |",
        "|---|---|---|---|",
    ]
    for work in ("prefill", "decode"):
        plain_t, patched_t = statistics.median(times[("plain", work)]), statistics.median(times[("patched", work)])
        lines.append(
            f"| {work} | {tokens[work] / plain_t:,.0f} | {tokens[work] / patched_t:,.0f} | {plain_t / patched_t:.3f} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
