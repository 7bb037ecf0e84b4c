"""Token collapse and gradient flow per layer (paper.md §2–§3 on real models).

Collapse: the mean pairwise cosine of a layer's hidden states over the tokens of a window, in O(n·d) as
(|Σ u_i|² − n) / (n(n − 1)) with u_i the unit vectors; and the effective rank exp(H(σ/Σσ)) of the [n, d] matrix.
Gradient flow: the norm of ∂loss/∂h at each layer's input (the mean next-token NLL of the window).
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["collapse", "effective_rank", "gradient_norms", "mean_pairwise_cosine"]


def mean_pairwise_cosine(h: torch.Tensor) -> float:
    """Mean of cos(h_i, h_j) over i ≠ j for h [n, d], without the n×n matrix."""
    h = h.detach().double()
    u = h / h.norm(dim=-1, keepdim=True)
    n = u.shape[0]
    return float((u.sum(0).pow(2).sum() - n) / (n * (n - 1)))


def effective_rank(h: torch.Tensor) -> float:
    """exp of the entropy of the normalised singular values of h [n, d] (Roy & Vetterli)."""
    s = torch.linalg.svdvals(h.detach().double())
    p = s / s.sum()
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


@torch.no_grad()
def collapse(model: Any, input_ids: torch.Tensor) -> dict[str, list[float]]:
    """Per layer input (embeddings, then each decoder layer's output before the final norm): mean pairwise cosine
    and effective rank over the tokens of ``input_ids`` [1, T] (BOS excluded: an attention sink, not a token)."""
    out = model(
        input_ids=input_ids.to(model.get_input_embeddings().weight.device), output_hidden_states=True, use_cache=False
    )
    states = [h[0, 1:] for h in out.hidden_states[:-1]]  # inputs of the layers
    return {"cosine": [mean_pairwise_cosine(h) for h in states], "effective_rank": [effective_rank(h) for h in states]}


def gradient_norms(model: Any, input_ids: torch.Tensor) -> list[float]:
    """‖∂L/∂h_l‖_F at the input of each decoder layer l for L = mean next-token NLL of ``input_ids`` [1, T]."""
    x = input_ids.to(model.get_input_embeddings().weight.device)
    with torch.enable_grad():
        out = model(input_ids=x, labels=x, output_hidden_states=True, use_cache=False)
        inputs = out.hidden_states[:-1]
        grads = torch.autograd.grad(out.loss, inputs)
    return [float(g.double().norm()) for g in grads]
