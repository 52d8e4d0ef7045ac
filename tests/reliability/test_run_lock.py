"""One run per run directory: a second run refuses (naming the holder) or waits, and a lock left by a killed
process is taken over. Two runs at once used to both pay in full."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from loopback import recipe
from protege.cli import app
from protege.pipeline.recipe import load_recipe
from protege.pipeline.runner import run_recipe


def hold_first_run(serve, tmp_path: Path):
    """Start a run in a thread whose 5th teacher request waits; return (server, recipe path, release, thread)."""
    release = threading.Event()
    server = serve(lambda n, body: release.wait(30) and None if n == 5 else None)
    path = recipe(tmp_path, server.url, n=20)
    errors: list[BaseException] = []

    def first() -> None:
        try:
            run_recipe(load_recipe(path))
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    thread = threading.Thread(target=first)
    thread.start()
    deadline = time.time() + 30
    while server.count < 5 and time.time() < deadline:
        time.sleep(0.02)
    assert server.count >= 5, "the first run never reached the teacher"
    return server, path, release, thread, errors


def test_a_second_run_refuses_and_names_the_holder(serve, tmp_path):
    server, path, release, first, errors = hold_first_run(serve, tmp_path)
    message = "the second run was not refused"
    try:
        run_recipe(load_recipe(path))
    except Exception as err:  # noqa: BLE001 - the refusal is checked below
        message = str(err)
    finally:
        release.set()
        first.join(30)
    print(f"\ntwo runs on one directory: re-paid {server.repaid()} of {server.paid()} answers")
    assert "in use by another protege run" in message
    assert f"pid {os.getpid()}" in message and time.strftime("started %Y-") in message
    assert not errors and server.repaid() == 0


def test_the_cli_refuses_with_exit_1_and_an_error_event(serve, tmp_path):
    server, path, release, first, _ = hold_first_run(serve, tmp_path)
    log = tmp_path / "events.jsonl"
    try:
        result = CliRunner().invoke(app, ["--log-jsonl", str(log), "run", str(path)])
    finally:
        release.set()
        first.join(30)
    assert result.exit_code == 1, result.output
    assert "in use by another protege run" in result.output and "Traceback" not in result.output
    events = [json.loads(line) for line in log.read_text().splitlines()]
    assert [e["code"] for e in events if e["event"] == "error"] == ["run_locked"]


def test_a_second_run_that_waits_pays_for_nothing(serve, tmp_path):
    server, path, release, first, errors = hold_first_run(serve, tmp_path)
    second = threading.Thread(target=lambda: run_recipe(load_recipe(path), wait_s=60))
    second.start()
    time.sleep(0.5)
    assert second.is_alive(), "the second run should wait for the first"
    release.set()
    first.join(30)
    second.join(30)
    assert not errors and server.repaid() == 0
    assert server.paid() == len(server.answered)


def test_a_lock_left_by_a_killed_process_is_taken_over(serve, tmp_path):
    run_dir = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from protege.core.lock import RunLock; "
         f"RunLock({str(run_dir)!r}).acquire(); print('held', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    assert holder.stdout.readline().strip() == "held"
    server = serve()
    path = recipe(tmp_path, server.url, n=20)
    with pytest.raises(Exception, match=f"pid {holder.pid}"):
        run_recipe(load_recipe(path))
    holder.kill()
    holder.wait()
    log = tmp_path / "log.jsonl"
    result = CliRunner().invoke(app, ["--log-jsonl", str(log), "run", str(path)])
    assert result.exit_code == 0, result.output
    warnings = [json.loads(line) for line in log.read_text().splitlines() if '"stale_lock"' in line]
    assert warnings and f"pid {holder.pid}" in warnings[0]["message"]


def test_a_failed_run_releases_the_directory(serve, tmp_path):
    broken = [True]
    server = serve(lambda n, body: (401, {}, {"error": {"message": "bad key"}}) if broken[0] else None)
    path = recipe(tmp_path, server.url, n=20)
    with pytest.raises(Exception, match="401"):
        run_recipe(load_recipe(path))
    broken[0] = False
    run_recipe(load_recipe(path))
    assert server.paid() == len(server.answered)


def test_a_dry_run_is_allowed_while_a_run_holds_the_directory(serve, tmp_path):
    server, path, release, first, _ = hold_first_run(serve, tmp_path)
    try:
        result = CliRunner().invoke(app, ["run", str(path), "--dry-run"])
    finally:
        release.set()
        first.join(30)
    assert result.exit_code == 0, result.output
