"""The ``hf-logscale`` command line: thin commands over the library, one module per command group. Heavy imports
(torch, transformers) happen inside the commands, so ``--help`` is instant. Errors the user can fix become one
``Error: …`` line on stderr and exit code 2; ``HF_LOGSCALE_DEBUG=1`` shows the traceback."""

from __future__ import annotations

import os
import sys
import warnings

import typer
from rich.markup import escape

from ..errors import UserError
from . import evaluate, theory
from .compare import compare
from .diagnose import calibrate, diagnose, heads
from .lmeval import lm_eval_cmd
from .model import describe, fetch
from .patch import patch, schemes
from .render import err, show_warning

__all__ = ["app", "main"]

app = typer.Typer(
    help="Length-dependent attention scaling β_n for Hugging Face Llama / Mistral / Qwen / SmolLM3 models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command()(schemes)
app.command()(patch)
app.command()(describe)
app.command()(fetch)
app.add_typer(evaluate.app, name="eval")
app.command()(compare)
app.command("lm-eval")(lm_eval_cmd)
app.command()(diagnose)
app.command()(calibrate)
app.command()(heads)
app.add_typer(theory.app, name="theory")

# Errors a user can act on (the message says how); anything else is a bug and keeps its traceback.
USER_ERRORS = (UserError, FileNotFoundError, ImportError)


def main() -> None:
    """Console entry point."""
    warnings.showwarning = show_warning
    try:
        code = app(standalone_mode=False)
    except typer.Abort:
        sys.exit(130)
    except USER_ERRORS as e:
        if os.environ.get("HF_LOGSCALE_DEBUG", "").lower() in ("1", "true", "yes"):
            raise
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        err.print(f"[red]Error:[/red] {escape(msg)}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except Exception as e:
        if hasattr(e, "show") and hasattr(e, "exit_code"):  # usage errors from typer / click
            e.show()
            sys.exit(e.exit_code)
        err.print(
            "[red]This is a bug in hf-logscale[/red] (or a case it does not handle yet): please report it on the "
            "project's issue tracker with the command and the traceback below.",
            highlight=False,
            soft_wrap=True,
        )
        raise
    sys.exit(code if isinstance(code, int) else 0)
