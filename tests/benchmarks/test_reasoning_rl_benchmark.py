"""The RL benchmark's phases run end to end on tiny random llamas, so the script cannot rot unnoticed."""

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
    _phase(tmp_path, "base")
    assert json.loads((tmp_path / "runs" / "base.json").read_text())["test_problems"] == 4
    _phase(tmp_path, "arm", "--arms", "grpo", "kdrl_switch", "--steps", "2")
    raw = tmp_path / "results" / "reasoning_rl-quick-runs.jsonl"
    rows = [json.loads(line) for line in raw.read_text().splitlines()]
    assert [(r["arm"], r["seed"], r["steps"]) for r in rows] == [("grpo", 0, 2), ("kdrl_switch", 0, 2)]
    assert rows[0]["teacher_tokens"] == 0 and rows[1]["teacher_tokens"] > 0  # KD only in the switch's first step
    assert all(len(r["correct"]) == 4 and len(r["reward"]) == 2 for r in rows)
    again = _phase(tmp_path, "arm", "--arms", "grpo", "--steps", "2")  # resumable: a done row is not redone
    assert "already in" in again.stderr and len(raw.read_text().splitlines()) == 2
    table = _phase(tmp_path, "table")
    result = json.loads((tmp_path / "results" / "reasoning_rl-quick.json").read_text())
    arms = {a["arm"]: a for a in result["arms"]}
    assert arms["kdrl_switch"]["vs_grpo"]["items"] == 4 and "| kdrl_switch | 1 |" in table.stdout
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
