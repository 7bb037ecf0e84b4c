"""Diagnostics on real models (DESIGN §10): attention entropy vs the number of keys, token collapse, gradient flow,
and calibration of the critical scheme's τ."""

from .calibrate import Calibration, band_entropy, calibrate
from .entropy import attention_entropy, row_entropy
from .hidden import collapse, effective_rank, gradient_norms, mean_pairwise_cosine
from .run import Diagnosis, diagnose, token_windows

__all__ = [
    "Calibration",
    "Diagnosis",
    "attention_entropy",
    "band_entropy",
    "calibrate",
    "collapse",
    "diagnose",
    "effective_rank",
    "gradient_norms",
    "mean_pairwise_cosine",
    "row_entropy",
    "token_windows",
]
