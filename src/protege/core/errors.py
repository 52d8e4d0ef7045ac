"""Errors a user can act on, each with a stable machine ``code``, and the code of any other failure.

A :class:`ProtegeError` says what happened and what to do. A :class:`UserError` is one caused by the user's
recipe, command line or data (the key, file or row, and the fix). The command line prints their message alone,
with exit code 2, and shows the traceback only under ``--debug``; anything else that escapes is a bug and keeps
its traceback. Every failed run records one ``{"event": "error", "code": ...}`` line in ``--log-jsonl`` and in the
run's ``events.jsonl``, so a machine can tell why a run stopped. Codes are part of the interface: add new ones,
never rename one. The classes also subclass the built-in errors callers already catch (``ValueError``,
``FileNotFoundError``), so raising them changes nothing for code that does not care.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

# Exception types of the standard library that have a code of their own.
_BUILTIN_CODES = {KeyboardInterrupt: "interrupted", MemoryError: "out_of_memory", PermissionError: "permission",
                  FileNotFoundError: "not_found"}


class ProtegeError(Exception):
    """A failure whose message says what happened and what to do; ``code`` names its kind for machines."""

    code = "error"

    def __init__(self, message: str, *, code: Optional[str] = None):
        super().__init__(message)
        if code is not None:
            self.code = code


class UserError(ProtegeError, ValueError):
    """Bad input from the recipe, the command line or the data."""

    code = "user_error"


class NotFound(UserError, FileNotFoundError):
    """A file or folder the user named does not exist; the message carries its absolute path."""

    code = "not_found"


def not_found(path: str | Path, what: str, fix: str) -> NotFound:
    """``not found: /absolute/path (what); fix`` as an exception to raise."""
    return NotFound(f"not found: {Path(path).expanduser().resolve()} ({what}); {fix}")


class RunLocked(ProtegeError):
    """Another process is running a recipe in the same run directory."""

    code = "run_locked"


class LedgerCorrupt(ProtegeError):
    """The run's ``ledger.sqlite`` cannot be read."""

    code = "ledger_corrupt"


class ShardCorrupt(ProtegeError):
    """A Parquet shard of a records table cannot be read; ``path`` and ``table`` say which."""

    code = "shard_corrupt"

    def __init__(self, message: str, *, path: Path, table: str):
        super().__init__(message)
        self.path, self.table = path, table


class InputMissing(ProtegeError, ValueError):
    """A stage's input table, which an earlier stage made, is gone (removed by hand, or never written)."""

    code = "input_missing"


class RunInterrupted(KeyboardInterrupt):
    """The user stopped the run (Ctrl-C); the message says what was saved. Still a KeyboardInterrupt, so code
    that stops on Ctrl-C stops on it."""

    code = "interrupted"


def error_code(exc: BaseException) -> str:
    """The machine code of any exception: its own ``code`` attribute when it has a text one, else by type."""
    code = getattr(exc, "code", None)
    if isinstance(code, str) and code:
        return code
    for kind, name in _BUILTIN_CODES.items():
        if isinstance(exc, kind):
            return name
    return "internal"
