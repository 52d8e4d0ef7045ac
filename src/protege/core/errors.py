"""Errors a user can act on, each with a stable machine ``code``, and the code of any other failure.

The command line prints a :class:`ProtegeError`'s message without a traceback, and every failed run records one
``{"event": "error", "code": ...}`` line in ``--log-jsonl`` and in the run's ``events.jsonl``, so a machine can
tell why a run stopped. Codes are part of the interface: add new ones, never rename one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

# Exception types of the standard library (and of subprocess-free I/O) that have a code of their own.
_BUILTIN_CODES = {KeyboardInterrupt: "interrupted", MemoryError: "out_of_memory", PermissionError: "permission",
                  FileNotFoundError: "not_found"}


class ProtegeError(Exception):
    """A failure whose message says what happened and what to do; ``code`` names its kind for machines."""

    code = "error"

    def __init__(self, message: str, *, code: Optional[str] = None):
        super().__init__(message)
        if code is not None:
            self.code = code


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
