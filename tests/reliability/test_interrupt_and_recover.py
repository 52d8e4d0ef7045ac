"""Clean interruption and recovery: Ctrl-C stops within two seconds and says what was saved; a damaged ledger or
shard, or a table that went missing, is named with the command that recovers; every failed run leaves an
``error`` event with a code, and retries leave ``warning`` events; reports are written whole or not at all."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from loopback import recipe
from protege.cli import app
from protege.core.run import Run
from protege.pipeline.recipe import load_recipe
from protege.pipeline.runner import run_recipe


def cli(*args: str) -> tuple[object, list[dict]]:
    """Run the CLI in this process with a JSON-lines log; return the result and the logged events."""
    log = Path(os.environ.get("TMPDIR", "/tmp")) / f"protege-events-{os.getpid()}-{time.time_ns()}.jsonl"
    result = CliRunner().invoke(app, ["--log-jsonl", str(log), *args])
    events = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    log.unlink(missing_ok=True)
    return result, events


def errors(events: list[dict]) -> list[str]:
    return [e.get("code") for e in events if e["event"] == "error"]


def test_ctrl_c_stops_within_two_seconds_and_says_what_was_saved(serve, tmp_path):
    holding, release, held = [True], threading.Event(), []

    def hold(n: int, body: dict):
        if n > 30 and holding[0]:
            held.append(n)
            release.wait(120)
        return None

    server = serve(hold)
    path = recipe(tmp_path, server.url, teacher={"timeout_s": 120})
    log = tmp_path / "log.jsonl"
    # The child must get Ctrl-C as a terminal user's process does. A process inherits an *ignored* SIGINT across
    # exec (a test suite started in the background by a non-interactive shell runs with SIGINT ignored), and then
    # Python never installs its KeyboardInterrupt handler: the signal would be dropped and no exit ever come. A
    # handler installed here is reset to the default by exec, so the child's Python installs its own.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        proc = subprocess.Popen([sys.executable, "-m", "protege.cli", "--log-jsonl", str(log), "run", str(path)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    finally:
        signal.signal(signal.SIGINT, previous)
    try:
        # The 2 s are counted from the Ctrl-C, once the run is in its teacher-calling loop with requests held in
        # flight: start-up and loading, seconds long on a loaded machine, are not part of the guarantee.
        deadline = time.time() + 120
        while len(held) < 2 and time.time() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert len(held) >= 2, proc.stderr.read() if proc.poll() is not None else "no requests in flight"
        time.sleep(0.3)
        began = time.perf_counter()
        proc.send_signal(signal.SIGINT)
        try:
            out, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            pytest.fail(f"no exit within 30 s of Ctrl-C:\n{proc.communicate()[1][-600:]}")
        elapsed = time.perf_counter() - began
    finally:
        holding[0] = False
        if proc.poll() is None:
            proc.kill()
    print(f"\nCtrl-C with {len(held)} requests in flight: exited in {elapsed:.2f} s\n{err[-600:]}")
    assert elapsed < 2.0 and proc.returncode == 130
    assert "interrupted during stage 'annotate'" in err and "saved" in err and "Traceback" not in err
    assert "interrupted" in errors([json.loads(line) for line in log.read_text().splitlines()])
    run_recipe(load_recipe(path))  # resumes: only the requests that were in flight are asked again
    release.set()
    time.sleep(0.2)  # the abandoned requests are answered (to nobody) now: a server bills them anyway
    print(f"re-paid after Ctrl-C: {server.repaid()} (in flight: {len(held)})")
    # The requests in flight, and candidates already answered for the prompts they belong to.
    assert server.repaid() <= 2 * len(held)


@pytest.mark.parametrize("damage", ["not a database", "malformed pages"])
def test_a_damaged_ledger_is_named_with_the_way_to_recover(serve, tmp_path, damage):
    server = serve()
    path = recipe(tmp_path, server.url, n=20)
    run = run_recipe(load_recipe(path))
    run.ledger.close()
    ledger = run.ledger.path
    for extra in (ledger.with_name(ledger.name + "-wal"), ledger.with_name(ledger.name + "-shm")):
        extra.unlink(missing_ok=True)
    data = bytearray(ledger.read_bytes())
    if damage == "not a database":
        data[:100] = os.urandom(100)
    else:
        data[4096:] = os.urandom(len(data) - 4096)
    ledger.write_bytes(bytes(data))
    for args in (["run", str(path), "--force", "annotate"], ["inspect", str(run.path)]):
        result, events = cli(*args)
        assert result.exit_code != 0 and "Traceback" not in result.output
        assert str(ledger) in " ".join(result.output.split()).replace(" ", "") or str(ledger) in result.output
        assert ".recover" in result.output and errors(events) == ["ledger_corrupt"]


def corrupt_first_shard(run: Run, table: str) -> Path:
    shard = sorted((run.path / "records" / table).glob("part-*.parquet"))[0]
    shard.write_bytes(b"PAR1" + os.urandom(200))
    return shard


def test_a_damaged_shard_is_named_with_the_command_that_remakes_it(serve, tmp_path):
    server = serve()
    path = recipe(tmp_path, server.url, n=40)
    run = run_recipe(load_recipe(path))
    shard = corrupt_first_shard(run, "annotated")
    path.write_text(path.read_text() + "select: {budget: 4}\n")
    result, events = cli("run", str(path))
    flat = " ".join(result.output.split())
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert shard.name in flat and f"--force annotate" in flat and errors(events) == ["shard_corrupt"]
    paid = server.paid()
    result, _ = cli("run", str(path), "--force", "annotate")
    assert result.exit_code == 0, result.output
    assert server.paid() == paid, "re-making the table re-pays nothing: the ledger holds every answer"


def test_a_removed_table_points_at_force_not_at_running_the_stage_first(serve, tmp_path):
    server = serve()
    path = recipe(tmp_path, server.url, n=40)
    run = run_recipe(load_recipe(path))
    for shard in (run.path / "records" / "annotated").glob("part-*.parquet"):
        shard.unlink()
    path.write_text(path.read_text() + "select: {budget: 4}\n")
    with pytest.raises(Exception) as err:
        run_recipe(load_recipe(path))
    assert f"protege run {path} --force annotate" in str(err.value)
    events = [json.loads(line) for line in (run.path / "events.jsonl").read_text().splitlines()]
    assert [(e["code"], e["stage"]) for e in events if e["event"] == "error"] == [("input_missing", "select")]


def test_every_failed_run_records_an_error_event_with_a_code(serve, tmp_path):
    server = serve(lambda n, body: (403, {}, {"error": {"message": "forbidden"}}))
    path = recipe(tmp_path, server.url, n=20)
    result, events = cli("run", str(path))
    assert result.exit_code == 1 and errors(events) == ["teacher_auth"]
    run_events = [json.loads(line) for line in (tmp_path / "run" / "events.jsonl").read_text().splitlines()]
    assert [(e["code"], e["stage"]) for e in run_events if e["event"] == "error"] == [("teacher_auth", "annotate")]

    path.write_text(path.read_text().replace("data: {source: ", "data: {source: missing-"))
    result, events = cli("run", str(path))
    assert result.exit_code != 0 and len(errors(events)) == 1 and errors(events)[0]

    path.write_text("name: x\nrun_dir: run2\nteacher: {backend: hf, batchsize: 3}\n")
    result, events = cli("run", str(path))
    assert result.exit_code == 2 and errors(events) == ["recipe_invalid"]


def test_retries_are_warning_events_with_a_code(serve, tmp_path):
    server = serve(lambda n, body: (503, {"Retry-After": "0"}, {"error": {"message": "busy"}}) if n <= 2 else None)
    path = recipe(tmp_path, server.url, n=20)
    result, events = cli("run", str(path))
    assert result.exit_code == 0, result.output
    retries = [e for e in events if e["event"] == "warning" and e.get("code") == "teacher_retry"]
    assert len(retries) == 2 and all("503" in e["message"] for e in retries)
    assert server.repaid() == 0


def test_a_report_is_replaced_whole_or_not_at_all(tmp_path, monkeypatch):
    from protege.evaluate import report as kit

    run = Run(tmp_path / "run")
    kit.write_report(run, kit.Report("first", "the first report"))
    page = (run.artifacts / "report.html").read_text()
    real = os.replace

    def fail_on_html(src, dst):
        if str(dst).endswith("report.html"):
            raise OSError("disk full")
        real(src, dst)

    monkeypatch.setattr(kit.os, "replace", fail_on_html)
    with pytest.raises(OSError):
        kit.write_report(run, kit.Report("second", "the second report"))
    assert (run.artifacts / "report.html").read_text() == page


def test_an_interrupt_in_a_library_call_stays_a_keyboard_interrupt_and_says_what_was_saved(serve, tmp_path):
    stop_at = [10]

    class Interrupting:
        """Forwards to the loopback teacher; the 10th prompt is a Ctrl-C."""

        def __init__(self, inner):
            self.inner, self.backend, self.model_id, self.sent = inner, inner.backend, inner.model_id, 0

        def score(self, prompts, continuations):
            self.sent += len(prompts)
            if self.sent >= stop_at[0]:
                raise KeyboardInterrupt
            return self.inner.score(prompts, continuations)

    from protege.models.openai_compat import OpenAICompatTeacher

    server = serve()
    path = recipe(tmp_path, server.url, n=20)
    teacher = Interrupting(OpenAICompatTeacher(server.url, "served"))
    with pytest.raises(KeyboardInterrupt, match="saved"):
        run_recipe(load_recipe(path), teacher=teacher)
    events = [json.loads(line) for line in (tmp_path / "run" / "events.jsonl").read_text().splitlines()]
    assert [(e["code"], e["stage"]) for e in events if e["event"] == "error"] == [("interrupted", "annotate")]
