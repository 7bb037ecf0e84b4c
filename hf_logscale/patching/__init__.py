"""The injection: attention-function wrapper, install/remove, per-family facts, summary and verification."""

from .install import CONFIG_KEY, PatchState, applied, applied_label, is_patched, patch, patch_state, patched, unpatch

__all__ = [
    "CONFIG_KEY",
    "PatchState",
    "applied",
    "applied_label",
    "is_patched",
    "patch",
    "patch_state",
    "patched",
    "unpatch",
]
