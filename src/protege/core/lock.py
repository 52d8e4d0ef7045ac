"""One process at a time per run directory: an advisory lock on ``<run>/run.lock``.

Two ``protege run`` in one run directory would both ask the teacher for everything the ledger did not hold when
each began, so both would pay. The runner holds this lock for the whole run; a second run either waits for it
(``wait_s``) or stops at once with :class:`~protege.core.errors.RunLocked`, naming the holder's pid, host, start
time and command.

The lock is ``flock`` on the file: the kernel releases it when the holder exits, however it exits (a crash, a
``SIGKILL``, a power cut of the holder's machine for a local disk), so a stale lock cannot block a run. The file
also holds the holder's pid and start time, which is what the message shows; a later run that finds the file
naming a process that no longer holds the lock says it took over a stale lock. Where ``flock`` is unavailable
(no ``fcntl``, or a network filesystem that refuses it) the lock falls back to that pid: held while the process
it names is alive.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Optional

from protege.core.errors import RunLocked

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

LOCK_FILE = "run.lock"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def describe(holder: dict[str, Any]) -> str:
    """'pid 1234 on host, started 2025-01-02 10:00:00 (protege run r.yaml)' from a lock file's content."""
    started = holder.get("started_at")
    when = datetime.fromtimestamp(started).strftime("%Y-%m-%d %H:%M:%S") if started else "at an unknown time"
    command = f" ({holder['command']})" if holder.get("command") else ""
    return f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}, started {when}{command}"


class RunLock:
    """``with RunLock(folder, wait_s=0):`` holds the run directory for this process; re-entrant per instance."""

    def __init__(self, folder: str | Path, *, wait_s: float = 0.0, poll_s: float = 0.2,
                 on_stale: Optional[Callable[[str], None]] = None):
        self.path = Path(folder) / LOCK_FILE
        self.wait_s = wait_s
        self.poll_s = poll_s
        self.on_stale = on_stale
        self._fd: Optional[int] = None
        self._flock = fcntl is not None

    def holder(self) -> dict[str, Any]:
        """What the lock file says about the process that wrote it last (empty when nothing)."""
        try:
            return json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            return {}

    def acquire(self) -> "RunLock":
        if self._fd is not None:
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + self.wait_s
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            while not self._try(fd):
                if time.monotonic() >= deadline:
                    holder = self.holder()
                    waited = f" after waiting {self.wait_s:g} s" if self.wait_s else ""
                    raise RunLocked(
                        f"{self.path.parent} is in use by another protege run: {describe(holder)}. It was not "
                        f"started{waited}, so nothing is paid twice. Wait for that run to end (or stop it with "
                        "Ctrl-C: it keeps what it paid for), pass --wait SECONDS to wait for it, or use another "
                        "run_dir."
                    )
                time.sleep(self.poll_s)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        previous = self.holder()
        if previous.get("pid") and previous.get("pid") != os.getpid() and self.on_stale is not None:
            self.on_stale(f"took over the lock of {self.path.parent} left by {describe(previous)}, which is no "
                          "longer running")
        me = {"pid": os.getpid(), "host": socket.gethostname(), "started_at": time.time(),
              "command": " ".join(["protege", *sys.argv[1:]]) if sys.argv and "protege" in sys.argv[0] else ""}
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, json.dumps(me).encode())
        os.fsync(fd)
        return self

    def _try(self, fd: int) -> bool:
        if self._flock:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                return False
            except OSError:  # e.g. ENOLCK on a filesystem without flock: fall back to the pid in the file
                self._flock = False
        holder = self.holder()
        pid = holder.get("pid")
        return not pid or pid == os.getpid() or not _alive(int(pid))

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)  # a clean exit leaves no holder to report as stale
            if self._flock:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
