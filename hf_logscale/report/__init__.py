"""What a comparison leaves behind for people: figures and ``report.md``, both drawn from the result records and
the task registry."""

from .figures import make_figures
from .markdown import write_report

__all__ = ["make_figures", "write_report"]
