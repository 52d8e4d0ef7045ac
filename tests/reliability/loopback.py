"""A scripted OpenAI-compatible teacher on loopback and the tiny recipes the reliability cases run against it.

The server answers ``/v1/completions`` echo requests in the standard layout (the prompt split into words, then one
generated token), scoring a label word high when its cue word is in the text, so a classification run against
it is deterministic. It counts what it answered: ``answered[prompt]`` is how many times each distinct request got
a well-formed 200, so ``repaid()`` — answers paid for more than once — is the number the reliability cases bound.
A ``fault(n, body)`` hook may replace the answer to the n-th request (1-based) with a fault, hold it, or kill
the client.
"""

from __future__ import annotations

import json
import re
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Optional

Reply = tuple[int, dict[str, str], Any]
CUES = {"positive": "good", "negative": "bad"}
WORDS = ["movie", "plot", "actor", "scene", "story", "music", "cast", "ending", "film", "script", "score", "set"]


def echo_answer(text: str) -> dict:
    """Prompt logprobs of ``text`` in the standard layout: one row per word piece, then the generated 'Z'."""
    pieces = re.findall(r"\s*\S+", text) + ["Z"]
    offsets = [sum(len(p) for p in pieces[:i]) for i in range(len(pieces))]
    body = text.split("Text:", 1)[-1]
    values: list[Optional[float]] = [None]
    for piece in pieces[1:-1]:
        label = piece.strip()
        values.append(-0.2 if label in CUES and CUES[label] in body.split() else -2.0 if label in CUES else -1.0)
    values.append(-0.01)
    tops = [None] + [{p: v} for p, v in zip(pieces[1:], values[1:])]
    return {"choices": [{"text": text + "Z", "finish_reason": "length", "logprobs": {
        "tokens": pieces, "token_logprobs": values, "top_logprobs": tops, "text_offset": offsets}}],
        "usage": {"prompt_tokens": len(pieces) - 1, "completion_tokens": 1}}


class _Quiet(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client killed or interrupted mid-request is what these cases do on purpose


class Teacher:
    """The loopback server. ``fault(n, body) -> Reply | None`` may replace the n-th answer (None: answer it)."""

    def __init__(self, fault: Optional[Callable[[int, dict], Optional[Reply]]] = None):
        self.fault = fault
        self.count = 0
        self.answered: Counter = Counter()
        self.headers: list[dict] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                with outer.lock:
                    outer.headers.append(dict(self.headers))
                self._send(*outer.models())

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with outer.lock:
                    outer.count += 1
                    n = outer.count
                    outer.headers.append(dict(self.headers))
                reply = outer.fault(n, body) if outer.fault is not None else None
                if reply == "drop":  # the server dies mid-request: no answer at all
                    self.close_connection = True
                    return
                if reply is None:
                    reply = (200, {}, echo_answer(body["prompt"]))
                    with outer.lock:
                        outer.answered[body["prompt"]] += 1
                self._send(*reply)

            def _send(self, status: int, headers: dict, payload: Any) -> None:
                data = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    for key, value in headers.items():
                        self.send_header(key, value)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:  # the client went away (killed or interrupted)
                    pass

            def log_message(self, *args: Any) -> None:
                pass

        self.server = _Quiet(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/v1"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def models(self) -> Reply:
        return 200, {}, {"data": [{"id": "served"}]}

    def repaid(self) -> int:
        """Well-formed answers paid for more than once: what a crash or a kill cost."""
        return sum(n - 1 for n in self.answered.values())

    def paid(self) -> int:
        return sum(self.answered.values())

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def texts(n: int, seed: int = 0) -> list[dict]:
    """``n`` distinct short reviews with gold labels; the cue word decides the label."""
    rows = []
    for i in range(n):
        label = ["negative", "positive"][(i + seed) % 2]
        words = [WORDS[(i * 7 + j * 3 + seed) % len(WORDS)] for j in range(5)]
        words.insert(i % 5, CUES[label])
        rows.append({"text": " ".join(words) + f" no{i}", "label": label})
    return rows


def recipe(tmp: Path, url: str, *, n: int = 60, run_dir: str = "run", teacher: Optional[dict] = None,
           extra: str = "", name: str = "reliability") -> Path:
    """A labelling recipe (data + annotate) against the loopback teacher; returns its path."""
    data = tmp / "texts.jsonl"
    if not data.exists():
        data.write_text("\n".join(json.dumps(r) for r in texts(n)))
    spec = {"backend": "openai", "model": "served", "base_url": url, "max_concurrency": 4, "max_retries": 2,
            "timeout_s": 5, "batch_size": 8, **(teacher or {})}
    path = tmp / f"{name}.yaml"
    path.write_text(
        f"name: {name}\nrun_dir: {run_dir}\nteacher: {json.dumps(spec)}\n"
        "task: {labels: [negative, positive], chat: false}\n"
        f"data: {{source: {data}, dev_size: 10, test_size: 10, test_fraction: 0.2}}\n"
        "annotate: {chunk_size: 8, calibration: none}\n" + extra
    )
    return path
