"""The state transformers' rotary modules keep between forward passes.

Dynamic NTK keeps the frequencies of the longest sequence it has seen and goes back to the original ones only for a
sequence shorter than the original length: after a pass at 16 L, a pass at exactly L still runs with the
frequencies of 16 L. ``reset_dynamic_rope`` puts them back, so a result does not depend on what ran before it
(another task, a longer cell, a resumed run that skipped cells). ``rotary_snapshot`` saves and restores all of it
around a probe (LongRoPE also switches its frequency set in place by the largest position).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = ["reset_dynamic_rope", "rotary_snapshot"]


def rotary_snapshot(model: torch.nn.Module) -> Callable[[], None]:
    """The rotary modules' buffers and scalar attributes now; calling the result restores them (any number of
    times: each restore puts back fresh copies, so an in-place update cannot reach the snapshot)."""
    snap = []
    for m in model.modules():
        if type(m).__name__.endswith("RotaryEmbedding"):
            buffers = {k: v.clone() for k, v in m._buffers.items() if v is not None}
            scalars = {k: v for k, v in vars(m).items() if isinstance(v, (int, float, str, bool))}
            snap.append((m, buffers, scalars))

    def restore() -> None:
        for m, buffers, scalars in snap:
            for k, v in buffers.items():
                m._buffers[k] = v.clone()
            for k, v in scalars.items():
                setattr(m, k, v)

    return restore


def reset_dynamic_rope(model: torch.nn.Module) -> None:
    """Dynamic NTK's frequencies back to the original ones with its cached length back to the original length:
    the state of a freshly loaded model (its attention factor is always 1)."""
    for m in model.modules():
        kinds = getattr(m, "rope_type", None)
        if kinds is None or not hasattr(m, "original_max_seq_len"):
            continue
        for layer_type, kind in kinds.items() if isinstance(kinds, dict) else [(None, kinds)]:
            if "dynamic" not in kind:
                continue
            prefix = f"{layer_type}_" if layer_type else ""
            original = getattr(m, f"{prefix}original_inv_freq")
            m.register_buffer(f"{prefix}inv_freq", original.clone(), persistent=False)
            setattr(m, f"{prefix}max_seq_len_cached", m.original_max_seq_len)
