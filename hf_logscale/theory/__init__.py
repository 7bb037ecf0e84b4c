"""The paper's model of one attention layer (Chen, Lin, Polyanskiy, Rigollet, ICLR 2026): simulator, closed forms,
phase diagrams. β_n = γ ln n is critical at γ_c = 1/(1 − ρ)."""

from .closed_form import gamma_c, limits, regime, simplex_exact
from .layer import eta, eta_exact, jvp, layer, metrics
from .phase import Grid, phase_diagram, point, sweep_dimension, sweep_n, write_csv, write_sweep_csv
from .tokens import Tokens, gaussian_tokens, simplex_tokens

__all__ = [
    "Grid",
    "Tokens",
    "eta",
    "eta_exact",
    "gamma_c",
    "gaussian_tokens",
    "jvp",
    "layer",
    "limits",
    "metrics",
    "phase_diagram",
    "point",
    "regime",
    "simplex_exact",
    "simplex_tokens",
    "sweep_n",
    "sweep_dimension",
    "write_csv",
    "write_sweep_csv",
]
