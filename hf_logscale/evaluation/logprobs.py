"""Next-token log-likelihoods from the decoder's hidden states through the LM head in chunks of positions, in
float32, so the full [T, vocab] logits are never materialised (they cost 9–12 GiB at T = 8k with a 152k vocabulary).
The logits of each chunk are the LM head's output in the model's dtype, upcast to float32 — what
``model(input_ids, labels=...)`` computes, without holding all of them at once."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

__all__ = ["CHUNK_ELEMENTS", "decoder_hidden", "head_logits", "next_token_nll", "logits_at"]

CHUNK_ELEMENTS = 2**25  # logits per chunk (128 MiB in float32)


def head_logits(model: Any, hidden: torch.Tensor) -> torch.Tensor:
    """The LM head's logits of ``hidden`` with the architecture's own post-processing, in the model's dtype, as its
    forward computes them: Cohere multiplies by ``logit_scale``, Granite divides by ``logits_scaling``, Gemma 2/3
    soft-cap with ``final_logit_softcapping`` (c·tanh(x / c))."""
    config = model.config.get_text_config()
    logits = model.get_output_embeddings()(hidden)
    if getattr(config, "logit_scale", None) is not None:
        logits = logits * config.logit_scale
    if getattr(config, "logits_scaling", None) is not None:
        logits = logits / config.logits_scaling
    cap = getattr(config, "final_logit_softcapping", None)
    if cap is not None:
        logits = torch.tanh(logits / cap) * cap
    return logits


def decoder_hidden(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Final hidden states [B, T, H] (after the final norm) of ``model``'s decoder, without the LM head."""
    out = model.get_decoder()(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
    return out.last_hidden_state


def logits_at(model: Any, hidden: torch.Tensor) -> torch.Tensor:
    """float32 logits of ``hidden`` [..., H] (use on a few positions only)."""
    return head_logits(model, hidden).float()


def next_token_nll(model: Any, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """NLL (nats, float32) of ``targets`` [B, T] given ``hidden`` [B, T, H] (hidden[:, t] predicts targets[:, t]);
    entries with target −100 get 0. Chunked over positions."""
    head = model.get_output_embeddings()
    b, t = targets.shape
    step = max(1, CHUNK_ELEMENTS // (b * head.out_features))
    out = torch.zeros(b, t, dtype=torch.float32, device=targets.device)
    for s in range(0, t, step):
        logits = head_logits(model, hidden[:, s : s + step]).float()
        tgt = targets[:, s : s + step].to(logits.device)
        nll = F.cross_entropy(logits.flatten(0, 1), tgt.flatten(), ignore_index=-100, reduction="none")
        out[:, s : s + step] = nll.view(tgt.shape).to(out.device)
    return out
