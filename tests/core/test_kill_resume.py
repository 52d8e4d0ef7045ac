"""A labelling run killed with SIGKILL part-way, then re-run: no teacher request is paid twice, no record is lost
or written twice. This runs the real CLI in a subprocess with a real (tiny, local) transformers teacher."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tiny import save_tiny_causal_lm

TEXTS = 300


def ledger_calls(run_dir: Path) -> int:
    with sqlite3.connect(run_dir / "ledger.sqlite") as conn:
        return conn.execute("SELECT COUNT(*) FROM calls").fetchone()[0]


def shard_ids(run_dir: Path, table: str) -> list[str]:
    shards = sorted((run_dir / "records" / table).glob("part-*.parquet"))
    return [i for s in shards for i in pq.read_table(s, columns=["id"]).column("id").to_pylist()]


def protege(*args: str) -> list[str]:
    return [sys.executable, "-m", "protege.cli", "--quiet", *args]


@pytest.fixture
def labelling_recipe(tmp_path: Path) -> Path:
    model = save_tiny_causal_lm(tmp_path / "teacher", layers=4, hidden=64)
    words = ["good", "bad", "fine", "awful", "great", "dull", "movie", "plot", "actor", "scene"]
    rows = [{"text": " ".join(words[(i * 7 + j) % len(words)] for j in range(12)) + f" #{i}",
             "label": ["negative", "positive"][i % 2]} for i in range(TEXTS)]
    (tmp_path / "texts.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    recipe = tmp_path / "label.yaml"
    recipe.write_text(
        f"""
name: kill-resume
run_dir: run
teacher: {{backend: hf, model: {model}, batch_size: 4}}
task:
  labels: [negative, positive]
data: {{source: {tmp_path / 'texts.jsonl'}, dev_size: 20, test_size: 20, test_fraction: 0.1}}
annotate: {{chunk_size: 8, tables: [pool, dev, test], calibration: none}}
"""
    )
    return recipe


def test_sigkill_then_rerun_repeats_no_teacher_call_and_loses_no_record(labelling_recipe: Path):
    run_dir = labelling_recipe.parent / "run"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(protege("run", str(labelling_recipe)), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    # Kill once a few chunks of annotations are saved, i.e. in the middle of the labelling stage.
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        folder = run_dir / "records" / "annotated"
        if folder.exists() and len(list(folder.glob("part-*.parquet"))) >= 3:
            break
        time.sleep(0.05)
    assert proc.poll() is None, f"the run ended before it could be killed: {proc.stderr.read().decode()[-2000:]}"
    proc.send_signal(signal.SIGKILL)
    proc.wait()

    calls_before = ledger_calls(run_dir)
    annotated_before = len(set(shard_ids(run_dir, "annotated")))
    labelled = set(shard_ids(run_dir, "pool")) | set(shard_ids(run_dir, "dev")) | set(shard_ids(run_dir, "test"))
    assert 0 < annotated_before < len(labelled), "the kill should land part-way through labelling"
    assert calls_before >= annotated_before

    done = subprocess.run(protege("--log-jsonl", "-", "run", str(labelling_recipe)), env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    (annotate,) = [e["summary"] for e in events if e["event"] == "stage_end" and e["stage"] == "annotate"]

    calls_after = ledger_calls(run_dir)
    # Every request sent by the second run was new to the ledger, and every one the ledger knew came from it.
    assert annotate["teacher_requests"]["sent"] == calls_after - calls_before
    assert annotate["teacher_requests"]["from_ledger"] >= calls_before - annotated_before
    # One annotation per text, each written exactly once across all shards.
    annotated = shard_ids(run_dir, "annotated")
    assert set(annotated) == labelled
    assert len(annotated) == len(set(annotated))

    inspect = subprocess.run(protege("--log-jsonl", "-", "inspect", str(run_dir)), capture_output=True, text=True)
    (summary,) = [json.loads(line) for line in inspect.stdout.splitlines() if '"inspect"' in line]
    print(f"teacher calls: {calls_before} before the kill, {calls_after} after the re-run; second run sent "
          f"{annotate['teacher_requests']['sent']}, took {annotate['teacher_requests']['from_ledger']} from the ledger")
    assert summary["teacher_calls"]["score"] == calls_after
    assert summary["records"]["annotated"] == {"rows": len(labelled), "written_by": ["annotate"]}
