"""``python -m hf_logscale``: the command line (also what ``accelerate launch -m hf_logscale`` runs)."""

from .cli import main

main()
