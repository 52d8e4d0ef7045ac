"""The healing benchmark's phases run end to end on tiny random llamas (variants as parallel child processes and
in process), so the script cannot rot unnoticed."""

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
    # Children two at a time (--jobs 2); no teacher prepared yet, so the other variants wait for the first.
    _phase(tmp_path, "run", "--variants", "kd20", "kd60_lr1e3_last", "kd40_lr5e4", "--jobs", "2",
           "--logs", str(tmp_path / "logs"))
    raw = tmp_path / "results" / "reasoning_heal-quick-runs.jsonl"
    rows = [json.loads(line) for line in raw.open()]
    assert rows[0]["variant"] == "kd20" and sorted(r["variant"] for r in rows[1:]) == ["kd40_lr5e4", "kd60_lr1e3_last"]
    assert all(r["test_problems"] == 4 and sum(r["student_wrong"].values()) <= 4 for r in rows)
    assert len(list((tmp_path / "logs").glob("*.log"))) == 3
    base = tmp_path / "runs" / "3x1-t30"
    # The later variants are healed in copies of the first, finished run (not of each other while they heal):
    # the teacher is prepared once, the student twice.
    for variant in ("kd60_lr1e3_last", "kd40_lr5e4"):
        assert (_stage_starts(base / variant, "prepare_teacher"), _stage_starts(base / variant, "student")) == (1, 2)
    again = _phase(tmp_path, "run", "--variants", "kd20", "kd40_lr5e4_ends", "--jobs", "1")  # in process, resumed
    assert "already in" in again.stdout and '"variant": "kd40_lr5e4_ends"' in again.stdout
    assert len(raw.read_text().splitlines()) == 4
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


def test_teachers_are_copied_from_finished_variants_and_units_wait_for_the_first(tmp_path):
    spec = importlib.util.spec_from_file_location("reasoning_heal", SCRIPT)
    heal = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(heal)
    for name in ("kd20", "kd40_lr5e4"):  # kd20: a copy still healing (its metrics copied with it)
        (tmp_path / name / "artifacts").mkdir(parents=True)
        (tmp_path / name / "artifacts" / "reasoning_metrics.json").write_text("{}")
    assert heal.teacher_source(tmp_path, {"kd40_lr5e4"}) == tmp_path / "kd40_lr5e4"
    assert heal.teacher_source(tmp_path, set()) == tmp_path / "kd20"  # no row: as before, the first evaluated
    assert heal.teacher_source(tmp_path / "none", set()) is None
    argv = ["run", "--variants", "kd20", "kd40_lr5e4"]
    waiting = heal.units(["kd20", "kd40_lr5e4"], argv, prepared=False)
    assert [(u.name, u.after) for u in waiting] == [("kd20", ()), ("kd40_lr5e4", ("kd20",))]
    assert waiting[1].argv[1:] == (*argv, "--variants", "kd40_lr5e4", "--jobs", "1", "--child")
    assert all(u.after == () for u in heal.units(["kd20", "kd40_lr5e4"], argv, prepared=True))


def test_probe_scores_the_digits_of_each_result_not_the_space_after_equals():
    spec = importlib.util.spec_from_file_location("reasoning_heal", SCRIPT)
    heal = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(heal)
    # SmolLM2's pieces of "9 + 7 = 16\n16 - 19 = -3\n<answer>-3</answer>"
    pieces = ["9", " +", " ", "7", " =", " ", "1", "6", "\n", "1", "6", " -", " ", "1", "9", " =", " -", "3", "\n",
              "<", "answer", ">-", "3", "</", "answer", ">"]
    assert heal.result_spans(pieces) == [[6, 7], [17]]
    assert heal.result_spans(["4", " =", "\n"]) == []  # no digits after "=": nothing to score
