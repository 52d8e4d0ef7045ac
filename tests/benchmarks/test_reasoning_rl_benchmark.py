"""The RL benchmark's phases run end to end on tiny random llamas (the arms both as parallel child processes and
in process), so the script cannot rot unnoticed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "reasoning_rl.py"


def _phase(tmp_path, *args, timeout=900):
    proc = subprocess.run([sys.executable, str(SCRIPT), *args, "--quick", "--runs", str(tmp_path / "runs"),
                           "--out", str(tmp_path / "results"), "--threads", "1"],
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_quick_benchmark_runs_every_phase(tmp_path):
    # Two (arm, seed) children at once, both waiting for the base unit (no base yet): the parallel path.
    _phase(tmp_path, "arm", "--arms", "grpo", "kdrl_switch", "--steps", "2", "--jobs", "2",
           "--logs", str(tmp_path / "logs"))
    assert json.loads((tmp_path / "runs" / "base.json").read_text())["test_problems"] == 4
    assert sorted(p.name for p in (tmp_path / "logs").iterdir()) == ["base.log", "grpo-s0.log", "kdrl_switch-s0.log"]
    raw = tmp_path / "results" / "reasoning_rl-quick-runs.jsonl"
    rows = sorted((json.loads(line) for line in raw.read_text().splitlines()), key=lambda r: r["arm"])
    assert [(r["arm"], r["seed"], r["steps"]) for r in rows] == [("grpo", 0, 2), ("kdrl_switch", 0, 2)]
    assert rows[0]["teacher_tokens"] == 0 and rows[1]["teacher_tokens"] > 0  # KD only in the switch's first step
    assert all(len(r["correct"]) == 4 and len(r["reward"]) == 2 for r in rows)
    # In process (--jobs 1); resumable: a done row is not redone.
    again = _phase(tmp_path, "arm", "--arms", "grpo", "onpolicy_kd", "--steps", "2", "--jobs", "1")
    assert "grpo seed 0: already in" in again.stderr and "onpolicy_kd seed 0: accuracy" in again.stderr
    assert len(raw.read_text().splitlines()) == 3
    table = _phase(tmp_path, "table")
    result = json.loads((tmp_path / "results" / "reasoning_rl-quick.json").read_text())
    arms = {a["arm"]: a for a in result["arms"]}
    assert arms["kdrl_switch"]["vs_grpo"]["items"] == 4 and "| kdrl_switch | 1 |" in table.stdout
    assert arms["onpolicy_kd"]["vs_grpo"]["items"] == 4
    _phase(tmp_path, "parity", "--seeds", "0", "1")
    parity = {r["estimator"]: r for r in json.loads((tmp_path / "results" / "reasoning_rl-parity.json").read_text())}
    assert min(parity["k2"]["cos_reverse"]) >= 0.99 and min(parity["k3"]["cos_forward"]) >= 0.99
    assert max(parity["k1 (as a loss)"]["norm_ratio_to_reverse"]) < 0.1  # why protege refuses it
    _phase(tmp_path, "speed", "--steps", "1", "--repeats", "1")
    speed = json.loads((tmp_path / "results" / "reasoning_rl-speed-quick.json").read_text())
    rows = {r["variant"]: r for r in speed["table"]}
    assert set(rows) == {"protege_grpo", "protege_grpo_fp32_rollouts", "trl_grpo"}
    for row in rows.values():
        assert "error" not in row, row
        assert 16 <= row["generated_tokens_per_step"] <= 16 * 6 and row["step_s_median"] > 0
    assert rows["protege_grpo"]["vs"] == "trl_grpo" and rows["protege_grpo"]["time_ratio_equal_tokens"] > 0
