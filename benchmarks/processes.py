"""Run a benchmark's units of work as child processes, ``jobs`` at a time, each at ``threads`` torch threads.

On the 2-core machine two processes at one thread each is the efficient layout (one process at two threads
spends much of the second thread spinning). A benchmark script builds one :class:`Unit` per piece of work (the
child's argv re-runs the same script on that piece alone), and :func:`run_units` runs them:

* in list order, ``jobs`` at a time (a pool of threads, each waiting on its child); a unit whose ``after`` units
  have not ended yet waits and the next ready unit in the list takes the free slot;
* each child with ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS`` = ``threads`` (the script also calls
  ``torch.set_num_threads``), its stdout and stderr in ``<logs>/<unit name>.log``;
* a unit whose ``after`` unit failed or was skipped is skipped (what it needs was not made); ``skip(unit)``
  may return another reason not to start a unit (e.g. it would end past a deadline); ``ended(unit, code,
  seconds)`` is told of each exit and its wall time. A failure is reported with its log and does not stop the
  other units: the return value maps each unit to its exit code (``None``: skipped).

Children that write one shared file must not interleave: :func:`append_line` appends a line under an exclusive
``fcntl`` lock.

The glue a script needs to offer this (``augmentation.py``, ``rationales.py``, ``reasoning_rl.py``,
``reasoning_heal.py``): :func:`add_options` (``--jobs`` 2, ``--threads`` 1, ``--logs``; ``--jobs 1`` keeps the
script's own loop in its own process), :func:`child` (the invocation's command line narrowed to one unit, run
in process), :func:`after_first` (units that share what their group's first unit makes wait for it) and
:func:`run_children` (:func:`run_units` with those options; an exit status for the parent).
"""

from __future__ import annotations

import argparse
import fcntl
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable, Optional


@dataclass(frozen=True)
class Unit:
    name: str  # also the log file's name: no "/"
    argv: tuple[str, ...]  # the child's command line, without the interpreter
    after: tuple[str, ...] = ()  # names of units that must have ended before this one starts


def run_units(
    units: list[Unit],
    logs: Path,
    jobs: int,
    threads: int,
    skip: Optional[Callable[[Unit], Optional[str]]] = None,
    ended: Optional[Callable[[Unit, int, float], None]] = None,
) -> dict[str, Optional[int]]:
    """Run every unit (see the module doc); returns ``{name: exit code or None when skipped}``."""
    logs.mkdir(parents=True, exist_ok=True)
    env = os.environ | {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    pending, codes = list(units), {}
    known = {u.name for u in units}
    changed = threading.Condition()

    def next_unit() -> Optional[Unit]:
        with changed:
            while pending:
                # a dependency outside the list (done by an earlier invocation) holds nothing back
                ready = [u for u in pending if all(a in codes or a not in known for a in u.after)]
                if ready:
                    pending.remove(ready[0])
                    return ready[0]
                changed.wait()
            return None

    def worker() -> None:
        while (unit := next_unit()) is not None:
            code: Optional[int] = None
            missing = [a for a in unit.after if a in codes and codes[a] != 0]
            reason = f"{', '.join(missing)} did not finish" if missing else (skip(unit) if skip else None)
            if reason:
                print(f"skipped {unit.name}: {reason}", file=sys.stderr, flush=True)
            else:
                log, began = logs / f"{unit.name}.log", time.time()
                with log.open("w") as out:
                    code = subprocess.run([sys.executable, *unit.argv], env=env, stdout=out,
                                          stderr=subprocess.STDOUT).returncode
                if code:
                    print(f"{unit.name}: failed (exit {code}); see {log}", file=sys.stderr, flush=True)
                if ended:
                    ended(unit, code, time.time() - began)
            with changed:
                codes[unit.name] = code
                changed.notify_all()

    workers = [threading.Thread(target=worker) for _ in range(max(1, jobs))]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return codes


def append_line(path: Path, line: str) -> None:
    """Append one line to ``path`` under an exclusive lock, so lines written by parallel children never mix."""
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            fh.write(line.rstrip("\n") + "\n")
            fh.flush()
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def late(deadline: Optional[str], seconds: float) -> bool:
    """Whether ``seconds`` from now is past ``deadline`` (HH:MM UTC, today)."""
    if not deadline:
        return False
    now = datetime.now(timezone.utc)
    hour, minute = (int(x) for x in deadline.split(":"))
    return now + timedelta(seconds=seconds) > now.replace(hour=hour, minute=minute, second=0, microsecond=0)


def _at_least_one(text: str) -> int:
    if int(text) < 1:
        raise argparse.ArgumentTypeError(f"at least 1, not {text}")
    return int(text)


def add_options(parser: argparse.ArgumentParser, logs: Path, units: str) -> None:
    """``--jobs``, ``--threads``, ``--logs`` and the hidden ``--child`` (set by :func:`child`: the script skips
    whatever only the parent should write, e.g. a summary), for a script whose work is ``units``."""
    parser.add_argument("--jobs", type=_at_least_one, default=2, help=f"{units} run at once, each in its own "
                        "process at --threads torch threads (two at one thread each keep a 2-core machine busy "
                        "without oversubscribing it); 1: one after another in this process")
    parser.add_argument("--threads", type=_at_least_one, default=1, help="torch threads per process")
    parser.add_argument("--logs", type=Path, default=logs, help="with --jobs > 1: one log per child process")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)


def child(script: str, argv: list[str], *selection: str) -> tuple[str, ...]:
    """A child's command line: this invocation's ``argv`` with ``selection`` (options naming one unit, which
    override the same options earlier in ``argv``), run in process (``--jobs 1``)."""
    return (str(script), *argv, *selection, "--jobs", "1", "--child")


def after_first(units: list[Unit], group: Callable[[Unit], str]) -> list[Unit]:
    """Every unit but the first of its ``group`` also waits for that first one (which makes what the group
    shares: a base run, a prepared teacher), so no two children build it at once."""
    first: dict[str, str] = {}
    out = []
    for unit in units:
        opener = first.setdefault(group(unit), unit.name)
        out.append(unit if opener == unit.name else replace(unit, after=(*unit.after, opener)))
    return out


def run_children(units: list[Unit], args: argparse.Namespace) -> int:
    """Run ``units`` with the script's ``--jobs``, ``--threads`` and ``--logs`` (see :func:`add_options`),
    printing each unit's wall time; 1 when a unit failed or was skipped (named, with the logs' folder), else 0."""

    def ended(unit: Unit, code: int, seconds: float) -> None:
        if code == 0:
            print(f"{unit.name}: done in {seconds / 60:.1f} min", flush=True)

    codes = run_units(units, args.logs, args.jobs, args.threads, ended=ended)
    missed = [name for name, code in codes.items() if code != 0]
    if missed:
        print(f"not finished: {', '.join(missed)} (logs in {args.logs}); a rerun resumes", file=sys.stderr)
    return int(bool(missed))
