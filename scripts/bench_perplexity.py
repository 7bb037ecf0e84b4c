"""Benchmark: this project's perplexity vs ``model(input_ids, labels=...)`` vs lm-eval's rolling log-likelihood.

Same document, same window (BOS + n − 1 tokens, every token scored), on
1. a model with Qwen2's 151,936-token vocabulary and a tiny Llama body (the LM head dominates: the regime where
   full logits cost gigabytes), at 8k tokens, and
2. the project's reference model at 16× its training length.

Times: one process, the three methods interleaved, ``--reps`` repetitions each after a warm-up; medians.
Peak extra memory: on CUDA, ``max_memory_allocated`` above the memory held before the call; on CPU, a fresh
process per method measures its peak resident set (VmHWM) above its resident set before the call.
NLL: nats per token from each method; relative difference to ours.

Usage: python scripts/bench_perplexity.py [--length 8192] [--reps 3] [--device cpu|cuda] [--out FILE.md]
Needs lm-eval (pip install "lm-eval[hf]").
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

METHODS = ("hf-logscale", "labels", "lm-eval")


def build(case: str, length: int, device: str):
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    import hf_logscale as hls
    from hf_logscale.data import sample_corpus
    from hf_logscale.models import REFERENCE_MODEL

    if case == "vocab152k":
        tok = AutoTokenizer.from_pretrained(REFERENCE_MODEL)
        cfg = LlamaConfig(
            vocab_size=151936,
            hidden_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            intermediate_size=128,
            max_position_embeddings=length,
            tie_word_embeddings=False,
        )
        torch.manual_seed(0)
        model = LlamaForCausalLM(cfg).eval()
    else:
        model, tok = hls.load()
    model.to(device)
    text = " ".join(d.text for d in sample_corpus("heldout"))
    ids = tok(text, add_special_tokens=False)["input_ids"][: length - 1]
    doc = tok.decode(ids)
    if tok(doc, add_special_tokens=False)["input_ids"] != ids:  # lm-eval re-tokenises the text
        raise SystemExit("the document does not round-trip through the tokenizer")
    return model, tok, ids, doc


@torch.no_grad()
def run(method: str, model, tok, ids: list[int], doc: str, length: int) -> float:
    """NLL in nats per token over the n − 1 document tokens."""
    if method == "hf-logscale":
        from hf_logscale.evaluation import perplexity

        return perplexity(model, tok, [ids], length, batch_size=1).nll
    if method == "labels":
        x = torch.tensor([[tok.bos_token_id] + ids], device=model.device)
        return model(x, labels=x).loss.item()
    from lm_eval.api.instance import Instance

    lm = _lmeval(model, tok, length)
    (ll,) = lm.loglikelihood_rolling(
        [Instance(request_type="loglikelihood_rolling", doc={}, arguments=(doc,), idx=0)], disable_tqdm=True
    )
    return -ll / len(ids)


_LM = {}


def _lmeval(model, tok, length):
    if id(model) not in _LM:
        from lm_eval.models.huggingface import HFLM

        # add_bos_token=False: the rolling windows add the BOS prefix themselves (the tokenizer would add a second)
        _LM[id(model)] = HFLM(pretrained=model, tokenizer=tok, max_length=length, batch_size=1, add_bos_token=False)
    return _LM[id(model)]


def _rss(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(field)


def worker(case: str, method: str, length: int, device: str) -> None:
    """Child process: peak extra memory of one call (CPU: VmHWM − VmRSS before; CUDA: max allocated − allocated)."""
    model, tok, ids, doc = build(case, length, device)
    if method == "lm-eval":
        _lmeval(model, tok, length)  # construction is not the evaluation
    if device.startswith("cuda"):
        torch.cuda.synchronize()
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        nll = run(method, model, tok, ids, doc, length)
        peak = torch.cuda.max_memory_allocated() - before
    else:
        before = _rss("VmRSS")
        nll = run(method, model, tok, ids, doc, length)
        peak = _rss("VmHWM") - before
    print(json.dumps({"peak": peak, "nll": nll}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--length", type=int, default=8192, help="window of the 152k-vocabulary case")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--out", default="docs/bench_perplexity.md")
    ap.add_argument("--worker", nargs=2, metavar=("CASE", "METHOD"), help=argparse.SUPPRESS)
    ap.add_argument("--worker-length", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(*args.worker, args.worker_length, args.device)
        return

    from hf_logscale.models import REFERENCE_MODEL

    ref_len = 16 * json.loads((REFERENCE_MODEL / "config.json").read_text())["max_position_embeddings"]
    rows = []
    for case, length in (("vocab152k", args.length), ("reference", ref_len)):
        model, tok, ids, doc = build(case, length, args.device)
        times = {m: [] for m in METHODS}
        nll = {}
        for m in METHODS:  # warm-up (and lm-eval's wrapper construction) outside the timings
            nll[m] = run(m, model, tok, ids, doc, length)
        for _ in range(args.reps):
            for m in METHODS:
                if args.device.startswith("cuda"):
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
                run(m, model, tok, ids, doc, length)
                if args.device.startswith("cuda"):
                    torch.cuda.synchronize()
                times[m].append(time.perf_counter() - t0)
        del model
        _LM.clear()
        peak = {}
        for m in METHODS:
            cmd = [sys.executable, __file__, "--worker", case, m, "--worker-length", str(length)]
            env = {**os.environ, "TRANSFORMERS_VERBOSITY": "error"}
            res = subprocess.run([*cmd, "--device", args.device], capture_output=True, text=True, env=env)
            if res.returncode:
                raise SystemExit(f"worker {case}/{m} failed:\n{res.stderr[-2000:]}")
            peak[m] = json.loads(res.stdout.strip().splitlines()[-1])["peak"]
        for m in METHODS:
            rel = nll[m] / nll["hf-logscale"] - 1
            rows.append((case, length, m, statistics.median(times[m]), peak[m], nll[m], rel))
        print(f"{case} done", flush=True)

    lines = [
        f"Perplexity benchmark (`python scripts/bench_perplexity.py`, device {args.device}, torch {torch.__version__}, "
        f"median of {args.reps} interleaved repetitions)",
        "",
        "| model | n | method | time (s) | × ours | peak extra memory (MiB) | × ours | NLL | rel. diff. |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    ours = {(c, n): (t, p) for c, n, m, t, p, _, _ in rows if m == "hf-logscale"}
    for c, n, m, t, p, v, d in rows:
        t0, p0 = ours[(c, n)]
        mib, ratio = p / 2**20, p / max(p0, 1)
        lines.append(f"| {c} | {n} | {m} | {t:.3f} | {t / t0:.2f} | {mib:.0f} | {ratio:.1f} | {v:.6f} | {d:+.1e} |")
    text = "\n".join(lines) + "\n"
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)


if __name__ == "__main__":
    main()
