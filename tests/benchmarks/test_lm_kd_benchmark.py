"""The LM-KD benchmark runs end to end on tiny random models, so the script cannot rot unnoticed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "lm_kd.py"


def test_quick_benchmark_runs_every_variant(tmp_path):
    out = tmp_path / "lm_kd.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--in-process", "--steps", "1", "--out", str(out)],
        capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    rows = {row["variant"]: row for row in report["table"]}
    assert set(rows) == {"trl_gkd", "protege_online_bf16_teacher", "protege_online_fp32_teacher", "protege_cached",
                         "trl_distillation_on_policy", "protege_on_policy", "protege_on_policy_fp32_rollouts"}
    assert all(row["steps"] == 1 and row["step_s_median"] > 0 for row in rows.values())
    assert rows["protege_cached"]["vs"] == "trl_gkd" and rows["protege_on_policy"]["vs"] == "trl_distillation_on_policy"
    for name in ("trl_distillation_on_policy", "protege_on_policy", "protege_on_policy_fp32_rollouts"):
        # rollouts report their work beside their time: 4 prompts a step, each at most --new-tokens long
        assert 4 <= rows[name]["generated_tokens_per_step"] <= 4 * 16, rows[name]
        assert rows[name]["decode_steps_per_step"] <= 16 and rows[name]["s_per_1k_generated"] > 0
    assert rows["protege_on_policy"]["time_ratio_equal_tokens"] > 0
    ks = [q["k"] for q in report["cache_quality"]]
    assert ks == [16, 32, 64]
    # More of the teacher kept, more bytes, and a top-k + tail KL closer to the full one.
    errors = [q["kl_abs_error"] for q in report["cache_quality"]]
    sizes = [q["bytes_per_token"] for q in report["cache_quality"]]
    assert sizes == sorted(sizes) and errors == sorted(errors, reverse=True)
    assert "| protege_cached |" in proc.stdout
