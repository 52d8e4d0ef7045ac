"""The healing benchmark's phases run end to end on tiny random llamas, so the script cannot rot unnoticed."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "reasoning_heal.py"


def _phase(tmp_path, *args, timeout=600):
    proc = subprocess.run([sys.executable, str(SCRIPT), *args, "--quick", "--runs", str(tmp_path / "runs"),
                           "--out", str(tmp_path / "results"), "--threads", "1"],
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _stage_starts(run: Path, stage: str) -> int:
    events = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]
    return sum(e.get("event") == "stage_start" and e.get("stage") == stage for e in events)


def test_variants_share_one_prepared_teacher_and_rows_resume(tmp_path):
    _phase(tmp_path, "run", "--variants", "kd20", "kd60_lr1e3_last")
    rows = [json.loads(line) for line in (tmp_path / "results" / "reasoning_heal-quick-runs.jsonl").open()]
    assert [r["variant"] for r in rows] == ["kd20", "kd60_lr1e3_last"]
    assert all(r["test_problems"] == 4 and sum(r["student_wrong"].values()) <= 4 for r in rows)
    base = tmp_path / "runs" / "3x1-t30"
    # The second variant is healed in a copy of the first run: its teacher is prepared once, its student twice.
    assert _stage_starts(base / "kd60_lr1e3_last", "prepare_teacher") == 1
    assert _stage_starts(base / "kd60_lr1e3_last", "student") == 2
    again = _phase(tmp_path, "run", "--variants", "kd20")
    assert "already in" in again.stdout
    table = _phase(tmp_path, "table")
    assert "| 3x1 | 30 | kd60_lr1e3_last |" in table.stdout
    _phase(tmp_path, "probe", "--run", str(base / "kd20"), "--examples", "2")
    probe = json.loads((tmp_path / "results" / "reasoning_heal-probe-quick.json").read_text())["rows"]
    assert [r["layers"] for r in probe] == [[0, 1, 2, 3], [0, 2], [0, 1]]


def test_wrong_answers_are_counted_once_by_their_first_cause():
    spec = importlib.util.spec_from_file_location("reasoning_heal", SCRIPT)
    heal = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(heal)
    rows = [{"correct": True, "truncated": False, "formatted": True, "process_score": 1.0},
            {"correct": False, "truncated": True, "formatted": False, "process_score": None},
            {"correct": False, "truncated": False, "formatted": False, "process_score": 0.0},
            {"correct": False, "truncated": False, "formatted": True, "process_score": 0.0},
            {"correct": False, "truncated": False, "formatted": True, "process_score": 1.0},
            {"correct": False, "truncated": False, "formatted": True, "process_score": None}]
    assert heal.why_wrong(rows) == {"unformatted": 1, "truncated": 1, "wrong_step": 1, "steps_right_answer_wrong": 2}
