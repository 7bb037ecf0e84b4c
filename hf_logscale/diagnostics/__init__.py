"""Diagnostics on real models: attention entropy vs the number of keys, token collapse, gradient flow,
and calibration of the critical scheme's τ."""

from .calibrate import Calibration, band_entropy, calibrate, calibrate_layers, layers_table
from .entropy import attention_entropy, row_entropy
from .heads import HeadGaps, head_gaps, heads_csv, heads_table, row_gaps
from .hidden import collapse, effective_rank, gradient_norms, mean_pairwise_cosine
from .run import Diagnosis, run_diagnose, token_windows

__all__ = [
    "Calibration",
    "Diagnosis",
    "HeadGaps",
    "attention_entropy",
    "band_entropy",
    "calibrate",
    "calibrate_layers",
    "collapse",
    "run_diagnose",
    "effective_rank",
    "gradient_norms",
    "head_gaps",
    "heads_csv",
    "heads_table",
    "layers_table",
    "mean_pairwise_cosine",
    "row_entropy",
    "row_gaps",
    "token_windows",
]
