"""Never pay twice after a fault: every answer that arrived is in the ledger when a request fails or the process is
killed, so finishing the job re-pays only what was in flight: the requests in flight (at most the concurrency, 4
here) and, since a prompt's label candidates are stored together, candidates already answered for the prompts in
flight — at most twice the concurrency in all.

Each case runs the ledgered OpenAI-compatible teacher against the loopback server, breaks it at one point, then
finishes the same job and counts the answers the server gave twice (``repaid``). The counts are printed for the
suite's table (``pytest -s``).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from loopback import texts
from protege.core.ledger import Ledger
from protege.models.base import BackendError
from protege.models.ledgered import LedgeredTeacher
from protege.models.openai_compat import OpenAICompatTeacher

CONCURRENCY = 4
IN_FLIGHT = 2 * CONCURRENCY  # requests in flight, and answered sibling candidates of the prompts they belong to
LABELS = [" negative", " positive"]
PROMPTS = [f"Classify as negative or positive.\n\nText: {r['text']}\nAnswer:" for r in texts(40)]


def ledgered(url: str, ledger: Path) -> LedgeredTeacher:
    backend = OpenAICompatTeacher(url, "served", max_concurrency=CONCURRENCY, max_retries=1, timeout_s=5,
                                  backoff_base_s=0.01)
    return LedgeredTeacher(backend, Ledger(ledger), batch_size=8)


def finish(url: str, ledger: Path) -> list[list[float]]:
    return ledgered(url, ledger).score(PROMPTS, [LABELS] * len(PROMPTS))


FAULTS = {
    "malformed 200": lambda: (200, {}, "{this is not json"),
    "200 without choices": lambda: (200, {}, {"id": "cmpl-1", "object": "text_completion"}),
    "400 mid-batch": lambda: (400, {}, {"error": {"message": "prompt is too long"}}),
    "server died": lambda: "drop",
}


@pytest.mark.parametrize("fault", list(FAULTS))
@pytest.mark.parametrize("at", [11, 45])
def test_a_fatal_answer_repays_only_requests_in_flight(serve, tmp_path, fault, at):
    broken = [True]

    def script(n: int, body: dict):
        if broken[0] and (n == at or (fault == "server died" and n > at)):
            return FAULTS[fault]()
        return None

    server = serve(script)
    with pytest.raises(BackendError):
        finish(server.url, tmp_path / "ledger.sqlite")
    broken[0] = False
    scores = finish(server.url, tmp_path / "ledger.sqlite")
    print(f"\n{fault} at request {at}: re-paid {server.repaid()} of {server.paid()} answers")
    assert len(scores) == len(PROMPTS) and all(len(row) == 2 for row in scores)
    assert len(server.answered) == 2 * len(PROMPTS)
    assert server.repaid() <= IN_FLIGHT


def _killed_at(url_of, tmp_path: Path, at: int) -> int:
    """Run the job in a forked child that the server SIGKILLs when request ``at`` arrives; return its pid."""
    go_read, go_write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: wait for the parent's go, then work until killed
        try:
            os.read(go_read, 1)
            finish(url_of(), tmp_path / "ledger.sqlite")
        finally:
            os._exit(0)
    os.write(go_write, b"x")
    return pid


@pytest.mark.parametrize("at", [1, 14, 30, 47, 78])
def test_a_sigkill_at_any_point_repays_only_requests_in_flight(serve, tmp_path, at):
    victim: list[int] = []

    def script(n: int, body: dict):
        if n == at and victim:
            os.kill(victim[0], signal.SIGKILL)
            return "drop"
        return None

    server = serve(script)
    victim.append(_killed_at(lambda: server.url, tmp_path, at))
    _, status = os.waitpid(victim[0], 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    kept = Ledger(tmp_path / "ledger.sqlite").totals().calls
    time.sleep(0.05)  # let the server threads of the dead client's requests finish counting
    scores = finish(server.url, tmp_path / "ledger.sqlite")
    print(f"\nSIGKILL at request {at}: {kept} answers kept, re-paid {server.repaid()} of {server.paid()}")
    assert len(scores) == len(PROMPTS) and len(server.answered) == 2 * len(PROMPTS)
    assert server.repaid() <= IN_FLIGHT


def test_identical_requests_in_one_batch_are_paid_once(serve, tmp_path):
    server = serve()
    teacher = ledgered(server.url, tmp_path / "ledger.sqlite")
    prompts = [PROMPTS[0], PROMPTS[1], PROMPTS[0], PROMPTS[0]]
    scores = teacher.score(prompts, [LABELS] * 4)
    assert scores[0] == scores[2] == scores[3]
    assert server.paid() == 4 and server.repaid() == 0
