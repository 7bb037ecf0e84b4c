"""Diagnostics on real models: attention entropy vs the number of keys, token collapse, gradient flow,
and calibration of the critical scheme's τ."""

from .calibrate import Calibration, band_entropy, calibrate, calibrate_layers, layers_table
from .entropy import attention_entropy, row_entropy
from .hidden import collapse, effective_rank, gradient_norms, mean_pairwise_cosine
from .run import Diagnosis, run_diagnose, token_windows

__all__ = [
    "Calibration",
    "Diagnosis",
    "attention_entropy",
    "band_entropy",
    "calibrate",
    "calibrate_layers",
    "collapse",
    "run_diagnose",
    "effective_rank",
    "gradient_norms",
    "layers_table",
    "mean_pairwise_cosine",
    "row_entropy",
    "token_windows",
]
