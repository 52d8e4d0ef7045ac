"""What protege tells people and machines while it works: progress bars, status lines, a JSON-lines log.

One process-wide setting, made once by the CLI: ``configure(quiet=..., jsonl=...)``. Library code calls
``info``/``warn``/``progress`` and never prints directly, so ``--quiet`` silences everything but errors and
``--log-jsonl`` records every event with its fields. Every line, human or machine, passes through
:func:`protege.core.secrets.scrub` first.
"""

from __future__ import annotations

import json
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from protege.core.secrets import scrub

_console = Console(stderr=True, highlight=False, soft_wrap=True)
_quiet = False
_jsonl: TextIO | None = None


def configure(*, quiet: bool = False, jsonl: str | Path | None = None) -> None:
    global _quiet, _jsonl
    _quiet = quiet
    if _jsonl not in (None, sys.stdout):
        _jsonl.close()
    _jsonl = None
    if jsonl is not None:
        _jsonl = sys.stdout if str(jsonl) == "-" else open(jsonl, "a", buffering=1)


def event(name: str, **fields: Any) -> None:
    """Record a machine-readable event (only when a JSON-lines log is configured)."""
    if _jsonl is not None:
        _jsonl.write(scrub(json.dumps({"time": round(time.time(), 3), "event": name, **fields}, default=str)) + "\n")


def info(message: str, **fields: Any) -> None:
    event("info", message=message, **fields)
    if not _quiet:
        _console.print(scrub(message))


def warn(message: str, **fields: Any) -> None:
    event("warning", message=message, **fields)
    if not _quiet:
        _console.print(f"[yellow]warning:[/yellow] {scrub(message)}")


def error(message: str, **fields: Any) -> None:
    event("error", message=message, **fields)
    _console.print(f"[red]error:[/red] {scrub(message)}")


def print_renderable(renderable: Any) -> None:
    """Tables and panels for people; suppressed by ``--quiet``."""
    if not _quiet:
        Console().print(renderable)


@contextmanager
def progress(description: str, total: int | None) -> Iterator[Callable[[int], None]]:
    """A progress bar; yields ``advance(n)``. Silent when quiet or when stderr is not a terminal."""
    event("progress_start", task=description, total=total)
    if _quiet or not _console.is_terminal:
        done = 0

        def advance(n: int = 1) -> None:
            nonlocal done
            done += n

        yield advance
        event("progress_end", task=description, done=done)
        return
    bar = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TimeRemainingColumn(), console=_console, transient=False,
    )
    with bar:
        task = bar.add_task(description, total=total)
        yield lambda n=1: bar.advance(task, n)
    event("progress_end", task=description)
