"""What held before this suite existed, kept holding: a SIGKILL of the real command mid-annotation loses and
duplicates nothing, transient server faults are retried to the end of the job, recipe typos fail before anything
is created, and a large labelling job streams through bounded batches in bounded memory."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import tracemalloc

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from loopback import recipe, texts
from protege.cli import app
from protege.core.run import Run
from protege.pipeline.recipe import load_recipe, parse_recipe
from protege.pipeline.runner import run_recipe


def shard_ids(run: Run, table: str) -> list[str]:
    return [i for s in sorted((run.path / "records" / table).glob("part-*.parquet"))
            for i in pq.read_table(s, columns=["id"]).column("id").to_pylist()]


def test_sigkill_of_the_command_mid_annotation_loses_and_duplicates_nothing(serve, tmp_path):
    victim: list[int] = []

    def script(n: int, body: dict):
        if n == 45 and victim:
            os.kill(victim[0], signal.SIGKILL)
            return "drop"
        return None

    server = serve(script)
    path = recipe(tmp_path, server.url, n=60)
    proc = subprocess.Popen([sys.executable, "-m", "protege.cli", "--quiet", "run", str(path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)))
    victim.append(proc.pid)
    try:
        proc.wait(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    run = Run(tmp_path / "run")
    kept = run.ledger.totals().calls
    assert 0 < kept
    time.sleep(0.05)
    run = run_recipe(load_recipe(path))
    print(f"\nSIGKILL of `protege run` at request 45: {kept} answers kept, re-paid {server.repaid()}")
    annotated = shard_ids(run, "annotated")
    labelled = {i for t in ("pool", "dev", "test") for i in shard_ids(run, t)}
    assert set(annotated) == labelled and len(annotated) == len(set(annotated))
    assert server.repaid() <= 8  # requests in flight and answered candidates of their prompts: 2 x concurrency


def test_transient_server_faults_are_retried_to_the_end(serve, tmp_path):
    def script(n: int, body: dict):
        if n == 3:
            return 429, {"Retry-After": "0"}, {"error": {"message": "rate limited"}}
        if n == 9:
            return 500, {}, "internal error"
        if n == 15:
            return "drop"  # a broken connection
        if n == 21:
            time.sleep(1.5)  # answered after the client gave up: a timeout
        return None

    server = serve(script)
    path = recipe(tmp_path, server.url, n=20, teacher={"timeout_s": 1.0, "max_retries": 3})
    run = run_recipe(load_recipe(path))
    assert run.ledger.stage_status("annotate") == "done"
    time.sleep(0.6)
    # Only the request that timed out was paid twice: the server answered it to a client that had left.
    assert server.repaid() == 1


def test_a_recipe_typo_fails_before_anything_is_created(tmp_path):
    path = recipe(tmp_path, "http://127.0.0.1:9/v1")
    path.write_text(path.read_text().replace("chunk_size", "chunksize"))
    result = CliRunner().invoke(app, ["run", str(path)])
    assert result.exit_code == 2 and "annotate.chunksize" in result.output and "chunk_size" in result.output
    assert not (tmp_path / "run").exists()


class Bounded:
    """A scripted scorer that records the largest request batch it was sent."""

    backend, model_id = "fake", "bounded"

    def __init__(self) -> None:
        self.largest = 0

    def score(self, prompts, continuations):
        self.largest = max(self.largest, len(prompts))
        return [[0.0 if "good" in str(p) else -1.0, -0.5] for p in prompts]


@pytest.mark.parametrize("n", [2000])
def test_a_large_job_streams_in_bounded_batches_and_memory(tmp_path, n):
    (tmp_path / "t.jsonl").write_text("\n".join(json.dumps(r) for r in texts(n)))
    recipe_ = parse_recipe({
        "name": "stream", "run_dir": str(tmp_path / "run"),
        "teacher": {"backend": "hf", "model": "smollm2-135m-instruct", "batch_size": 64},
        "task": {"labels": ["negative", "positive"]},
        "data": {"source": str(tmp_path / "t.jsonl"), "dev_size": 10, "test_size": 10},
        "annotate": {"chunk_size": 250, "calibration": "none"}})
    teacher = Bounded()
    tracemalloc.start()
    try:
        run = run_recipe(recipe_, teacher=teacher)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    labelled = sum(run.records.count(t) for t in ("pool", "dev", "test"))
    assert run.records.count("annotated") == labelled > n // 2
    assert teacher.largest <= 64
    print(f"\n{labelled} texts annotated with a Python heap peak of {peak / 1e6:.0f} MB")
    assert peak < 40e6
