"""Errors caused by the user's recipe or data, as opposed to bugs in protege.

A :class:`UserError` says what is wrong (the key, file or row) and how to fix it; the command line prints its
message alone, with exit code 2, and shows the traceback only under ``--debug``. Anything else that escapes is a
bug and keeps its traceback. Both classes subclass the built-in errors code already catches (``ValueError``,
``FileNotFoundError``), so raising them changes nothing for callers that do not care.
"""

from __future__ import annotations

from pathlib import Path


class UserError(ValueError):
    """Bad input from the recipe, the command line or the data; ``code`` is a stable machine name for it."""

    code = "user_error"

    def __init__(self, message: str, *, code: str | None = None):
        super().__init__(message)
        if code is not None:
            self.code = code


class NotFound(UserError, FileNotFoundError):
    """A file or folder the user named does not exist; the message carries its absolute path."""

    code = "not_found"


def not_found(path: str | Path, what: str, fix: str) -> NotFound:
    """``not found: /absolute/path (what); fix`` as an exception to raise."""
    return NotFound(f"not found: {Path(path).expanduser().resolve()} ({what}); {fix}")
