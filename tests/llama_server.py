"""llama-cpp-python's OpenAI-compatible server on loopback with the embedded SmolLM2 GGUF, for the tests that
need a real server (the openai backend's, the served KD teacher's)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import httpx
import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def smollm2_gguf() -> str:
    """The embedded SmolLM2-135M-Instruct GGUF, or a skip when it is not installed."""
    from protege.models.resolve import ModelNotFoundError, resolve

    try:
        resolved = resolve("smollm2-135m-instruct")
    except ModelNotFoundError as exc:
        pytest.skip(str(exc))
    return os.path.join(resolved.location, resolved.gguf_file or "")


@contextmanager
def llama_server(gguf: str, log_dir: Path) -> Iterator[str]:
    """The server's base URL (``http://127.0.0.1:<port>/v1``) while it runs; a test failure if it does not start."""
    # One thread: on a shared CPU, llama.cpp's spinning worker threads slow down badly when cores are busy.
    port = free_port()
    log = (log_dir / "server.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", gguf, "--host", "127.0.0.1", "--port", str(port),
         "--n_ctx", "1024", "--n_threads", "1", "--n_threads_batch", "1"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                pytest.fail(f"llama.cpp server exited with {proc.returncode}; see {log.name}")
            try:
                if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"llama.cpp server did not answer /v1/models within 120 s; see {log.name}")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
