"""What protege tells people and machines while it works: status lines, progress, a JSON-lines log.

One process-wide setting, made once by the CLI (or :func:`protege.run`): ``configure(quiet=..., jsonl=...)``.
Library code calls ``info``/``warn``/``progress``/``headline`` and never prints directly:

- by default people see status lines, warnings and progress (a bar on a terminal; when output goes to a file or
  a pipe, one plain line every ``PROGRESS_SECONDS`` instead of nothing);
- ``--quiet`` leaves only the headline and errors;
- ``--log-jsonl`` records every event as one JSON object: messages as plain text (no markup), and every warning
  and error with a machine ``code``.

Every line, human or machine, passes through :func:`protege.core.secrets.scrub` first.

:func:`silence_third_party` turns down the libraries' own chatter (transformers and hub progress bars, their info
logging, the known deprecation warnings), which would otherwise outnumber protege's own lines.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.text import Text

from protege.core.secrets import scrub

from protege.core.secrets import scrub

_console = Console(stderr=True, highlight=False, soft_wrap=True)
_quiet = False
_jsonl: TextIO | None = None
PROGRESS_SECONDS = float(os.environ.get("PROTEGE_PROGRESS_SECONDS", "30"))


def configure(*, quiet: bool = False, jsonl: str | Path | None = None) -> None:
    global _quiet, _jsonl
    _quiet = quiet
    if _jsonl not in (None, sys.stdout):
        _jsonl.close()
    _jsonl = None
    if jsonl is not None:
        _jsonl = sys.stdout if str(jsonl) == "-" else open(jsonl, "a", buffering=1)
    silence_third_party()


def silence_third_party() -> None:
    """Quiet transformers, datasets, the hub client and accelerate: errors only, no progress bars of theirs."""
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    for name in ("transformers", "datasets", "huggingface_hub", "accelerate", "torch.distributed", "peft"):
        logging.getLogger(name).setLevel(logging.ERROR)
    # transformers 5 says on every forward call that the cache argument is deprecated; it is not the user's to fix.
    warnings.filterwarnings("ignore", message=r".*past_key_values.*", category=FutureWarning)
    # transformers' deprecation notices (is_gradient_checkpointing, ...) are for protege's developers, not its users.
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"(transformers|peft|accelerate)(\..*)?")
    try:
        import transformers

        transformers.logging.set_verbosity_error()
        transformers.logging.disable_progress_bar()
    except ImportError:  # pragma: no cover - a dependency
        pass
    try:
        import huggingface_hub.utils

        huggingface_hub.utils.disable_progress_bars()
    except ImportError:  # pragma: no cover - a dependency of transformers
        pass
    try:
        import datasets

        datasets.disable_progress_bars()
    except ImportError:  # pragma: no cover - a dependency
        pass


def plain(message: str) -> str:
    """``message`` without rich markup, as machines and log files want it."""
    try:
        return Text.from_markup(message).plain
    except Exception:  # a message with stray brackets is not markup
        return message


def event(name: str, **fields: Any) -> None:
    """Record a machine-readable event (only when a JSON-lines log is configured)."""
    if _jsonl is not None:
        _jsonl.write(scrub(json.dumps({"time": round(time.time(), 3), "event": name, **fields}, default=str)) + "\n")


def info(message: str, **fields: Any) -> None:
    event("info", message=plain(message), **fields)
    if not _quiet:
        _console.print(scrub(message))


def headline(message: str, **fields: Any) -> None:
    """The one sentence a run ends with: printed even under ``--quiet``."""
    event("headline", message=plain(message), **fields)
    _console.print(f"[bold]{scrub(message)}[/bold]")


def warn(message: str, *, code: str, **fields: Any) -> None:
    """A warning a person should read; ``code`` names it for machines (``calibration_default``, ...)."""
    event("warning", code=code, message=plain(message), **fields)
    if not _quiet:
        _console.print(f"[yellow]warning:[/yellow] {scrub(message)}")


def error(message: str, *, code: str = "error", **fields: Any) -> None:
    event("error", code=code, message=plain(message), **fields)
    _console.print(f"[red]error:[/red] {scrub(message)}", markup=True)


def print_renderable(renderable: Any) -> None:
    """Tables and panels for people; suppressed by ``--quiet``."""
    if not _quiet:
        Console().print(renderable)


@contextmanager
def progress(description: str, total: int | None) -> Iterator[Callable[[int], None]]:
    """Progress of a long step; yields ``advance(n)``.

    A bar on a terminal; otherwise (a log file, a pipe, CI) a plain line every ``PROGRESS_SECONDS`` and one at
    the end, so a long step never looks hung. Nothing under ``--quiet``.
    """
    event("progress_start", task=description, total=total)
    if _quiet or not _console.is_terminal:
        done, began = 0, time.monotonic()
        last = began

        def line() -> str:
            of = f"/{total}" if total else ""
            return f"{plain(description)}: {done}{of} after {time.monotonic() - began:.0f} s"

        def advance(n: int = 1) -> None:
            nonlocal done, last
            done += n
            if not _quiet and time.monotonic() - last >= PROGRESS_SECONDS:
                last = time.monotonic()
                _console.print(line(), markup=False)

        yield advance
        if not _quiet and time.monotonic() - began >= PROGRESS_SECONDS:
            _console.print(line() + " (done)", markup=False)
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
