"""A flash-attention kernel for CPU, so that the flash path (dispatch by name, 2-D padding masks, windows,
soft-capping, sinks) is tested without a GPU."""

import torch
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS


class StandInFlash:
    """transformers' flash calling convention: a 2-D padding mask or None, bottom-right causal alignment, the window
    from the ``sliding_window`` keyword, Gemma 2's ``softcap`` (cap · tanh(logit / cap) on the scaled logits) and
    gpt-oss's ``s_aux`` (one sink logit per head in every row's softmax, weighing no value), output [B, T, H, D].
    Written out in the query's dtype (float32 in these tests). It records the implementation name the kernel is
    looked up by, the masks and the windows."""

    def __init__(self, name: str):
        self.name = name
        self.looked_up: list[str] = []
        self.masks: list[torch.Tensor | None] = []
        self.windows: list[int | None] = []

    def __call__(
        self,
        module,
        query,
        key,
        value,
        attention_mask,
        dropout=0.0,
        scaling=None,
        sliding_window=None,
        softcap=None,
        s_aux=None,
        **kwargs,
    ):
        self.looked_up.append(module.config._attn_implementation)
        self.masks.append(attention_mask)
        self.windows.append(sliding_window)
        B, H, Tq, D = query.shape
        Tk = key.shape[-2]
        assert attention_mask is None or attention_mask.shape == (B, Tk), attention_mask.shape  # flash: 2-D only
        i = torch.arange(Tq)[:, None] + (Tk - Tq)
        j = torch.arange(Tk)[None, :]
        visible = j <= i
        if sliding_window:
            visible = visible & (j > i - sliding_window)
        visible = visible[None, None].expand(B, 1, Tq, Tk)
        if attention_mask is not None:
            visible = visible & attention_mask.bool()[:, None, None, :]
        empty = ~visible.any(-1, keepdim=True)  # left-padding rows: flash unpads them away; here they output 0
        k = key.repeat_interleave(H // key.shape[1], dim=1)
        v = value.repeat_interleave(H // value.shape[1], dim=1)
        logits = (query @ k.transpose(-1, -2)) * (D**-0.5 if scaling is None else scaling)
        if softcap is not None:
            logits = softcap * torch.tanh(logits / softcap)
        logits = logits.masked_fill(~visible, float("-inf"))
        if s_aux is not None:
            sink = s_aux.to(logits.dtype).view(1, H, 1, 1).expand(B, H, Tq, 1)
            logits = torch.cat([logits, sink], dim=-1)
        weights = torch.softmax(logits.masked_fill(empty, 0.0), dim=-1)[..., :Tk]
        out = (weights @ v).masked_fill(empty, 0.0)
        return out.transpose(1, 2).contiguous(), None


def register(monkeypatch, name: str) -> StandInFlash:
    """Register a stand-in under a flash name, as transformers does when the kernel is installed."""
    kernel = StandInFlash(name)
    monkeypatch.setitem(ALL_ATTENTION_FUNCTIONS._global_mapping, name, kernel)
    monkeypatch.setitem(
        ALL_MASK_ATTENTION_FUNCTIONS._global_mapping, name, ALL_MASK_ATTENTION_FUNCTIONS["flash_attention_2"]
    )
    return kernel
