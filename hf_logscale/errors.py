"""The one error a user can act on. ``UserError`` means: the input, a file, a dependency or the disk is not what
it must be, and the message says what to give instead. The command line prints it as one ``Error: …`` line
(exit code 2); anything else is a bug and keeps its traceback. A ``ValueError`` subclass, so Python callers that
catch ``ValueError`` keep working."""

from __future__ import annotations

__all__ = ["UserError"]


class UserError(ValueError):
    """Bad input, a missing file or optional dependency, a full disk: fixable by the user, as the message says."""
