"""Plumbing for teacher backends that speak HTTP: the API key, and concurrent requests that stream and stop cleanly.

:func:`read_api_key` reads a key from the environment, strips whitespace around it with a warning (a key file or
secret mount often ends in a newline, which no HTTP header may carry) and registers it with
:mod:`protege.core.secrets`, so no output shows it.

:func:`map_concurrently` runs requests on daemon threads and hands each result to the caller's thread as it
completes, so the caller can commit it at once. When one request fails, no new one starts, the requests still in
flight are awaited and their results handed over, then the first error is raised: nothing already paid for is
dropped. On Ctrl-C nothing is awaited: the requests in flight are abandoned with their daemon threads and the
interrupt propagates at once, so the process exits without waiting for a request's timeout.

:func:`server_message` extracts what a server said went wrong, for errors that quote it (scrubbed by the caller).
"""

from __future__ import annotations

import os
import queue
import threading
from typing import Any, Callable, Optional, Sequence, TypeVar

import httpx

from protege.core import console, secrets
from protege.core.errors import ProtegeError

T = TypeVar("T")
R = TypeVar("R")


def read_api_key(env: str) -> Optional[str]:
    """The API key in environment variable ``env`` (None when unset or blank), registered as a secret.

    Whitespace around it is stripped with a warning; whitespace or control characters inside it cannot go into
    an HTTP header, which is an error here rather than a failed request later.
    """
    raw = os.environ.get(env)
    if not raw:
        return None
    secrets.register(raw)
    key = raw.strip()
    if key != raw:
        console.warn(f"the API key in ${env} had whitespace around it (a newline from a key file or secret "
                     "mount?); it was stripped", code="api_key_whitespace")
    if not key:
        return None
    if any(ch.isspace() or not ch.isprintable() for ch in key) or not key.isascii():
        raise ProtegeError(f"the API key in ${env} contains whitespace, control or non-ASCII characters, which an "
                           "HTTP header cannot carry: set it to the key alone", code="api_key_invalid")
    return key


def map_concurrently(func: Callable[[T], R], items: Sequence[T], limit: int,
                     on_done: Optional[Callable[[int, R], None]] = None) -> list[R]:
    """``func`` over ``items``, at most ``limit`` at once, results in order; ``on_done(i, result)`` in this
    thread as each completes. Failure and interruption behave as the module docstring says."""
    results: list[Any] = [None] * len(items)
    if len(items) <= 1 or limit == 1:
        for i, item in enumerate(items):
            results[i] = func(item)
            if on_done is not None:
                on_done(i, results[i])
        return results
    todo: queue.SimpleQueue = queue.SimpleQueue()
    for i in range(len(items)):
        todo.put(i)
    finished: queue.SimpleQueue = queue.SimpleQueue()
    stop = threading.Event()
    started = [0]
    count = threading.Lock()

    def worker() -> None:
        while not stop.is_set():
            try:
                i = todo.get_nowait()
            except queue.Empty:
                return
            with count:
                started[0] += 1
            try:
                finished.put((i, True, func(items[i])))
            except BaseException as exc:  # handed to the caller's thread, which raises it
                finished.put((i, False, exc))
                return

    # Daemon threads: a request in flight never keeps an interrupted process alive until its timeout.
    for _ in range(min(limit, len(items))):
        threading.Thread(target=worker, daemon=True).start()
    error: Optional[BaseException] = None
    received = 0
    try:
        while received < (len(items) if error is None else started[0]):
            try:
                i, ok, value = finished.get(timeout=0.2)  # a timeout keeps Ctrl-C deliverable
            except queue.Empty:
                continue
            received += 1
            if not ok:
                stop.set()
                error = error or value
                continue
            results[i] = value
            if on_done is not None:
                on_done(i, value)
    except BaseException:
        stop.set()
        raise
    if error is not None:
        raise error
    return results


def server_message(response: httpx.Response, limit: int) -> str:
    """What a server says went wrong: the ``error.message`` of an OpenAI-style body, else its text, cut to ``limit``."""
    try:
        data = response.json()
    except ValueError:
        return response.text[:limit] or response.reason_phrase
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict) and error.get("message"):
        return str(error["message"])[:limit]
    if isinstance(error, str):
        return error[:limit]
    detail = data.get("detail") if isinstance(data, dict) else None
    return str(detail or data)[:limit]
