"""The command line: doctor, inspect and recipe errors, through the real typer app."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from protege.cli import app
from protege.core.ledger import CallRecord
from protege.core.run import Run

runner = CliRunner()


def events(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def test_doctor_reports_versions_and_embedded_models():
    result = runner.invoke(app, ["--quiet", "--log-jsonl", "-", "doctor"])
    checks = {e["check"]: e for e in events(result.output) if e["event"] == "doctor"}
    assert checks["python"]["status"] == "ok"
    assert checks["torch"]["status"] == "ok"
    for name in ("smollm2-135m-instruct", "smollm2-135m-half", "minilm-l6"):
        assert f"model {name}" in checks
    assert result.exit_code == (1 if any(c["status"] == "fail" for c in checks.values()) else 0)


def test_inspect_counts_calls_records_and_stages(tmp_path):
    run = Run(tmp_path / "run")
    run.ledger.put_many(
        [CallRecord(key=str(i), backend="hf", model="m", method="score", request={}, response=[0.0],
                    prompt_tokens=10, completion_tokens=1, latency_s=0.5, cost=0.01) for i in range(3)]
    )
    run.records.append("annotated", [{"id": "a"}, {"id": "b"}])
    run.ledger.mark_stage("annotate", "running")
    run.ledger.mark_stage("annotate", "done", {"seconds": 1.5})
    result = runner.invoke(app, ["--quiet", "--log-jsonl", "-", "inspect", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    (summary,) = [e for e in events(result.output) if e["event"] == "inspect"]
    assert summary["teacher_calls"] == {"score": 3}
    assert summary["records"] == {"annotated": {"rows": 2, "written_by": []}}  # no recipe.yaml: no catalogue
    assert summary["teacher_prompt_tokens"] == 30 and summary["teacher_cost"] == 0.03
    assert summary["stages"] == [{"name": "annotate", "status": "done", "state": "done", "seconds": 1.5}]


def test_inspect_refuses_a_folder_that_is_not_a_run(tmp_path):
    result = runner.invoke(app, ["inspect", str(tmp_path)])
    assert result.exit_code == 2
    assert "not a protege run directory" in result.output


def test_run_with_an_invalid_recipe_fails_before_doing_anything(tmp_path):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("name: x\nrun_dir: out\nfamily: lm\nteacher: {backend: hf, batchsize: 3}\n")
    result = runner.invoke(app, ["run", str(recipe)])
    assert result.exit_code == 2
    assert "teacher.batchsize" in result.output and "batch_size" in result.output
    assert not (tmp_path / "out").exists()


def test_set_overrides_must_be_key_value(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: x\nrun_dir: out\n")
    result = runner.invoke(app, ["run", str(recipe), "--set", "seed"])
    assert result.exit_code != 0 and "KEY=VALUE" in result.output


def test_recipes_lists_every_packaged_recipe_with_its_family():
    result = runner.invoke(app, ["--quiet", "--log-jsonl", "-", "recipes"])
    assert result.exit_code == 0, result.output
    listed = {e["path"].rsplit("/", 1)[-1]: e for e in events(result.output) if e["event"] == "recipe"}
    assert {"quickstart.yaml", "lm-kd-quickstart.yaml"} <= set(listed)
    assert listed["lm-kd-quickstart.yaml"]["family"] == "lm" and listed["quickstart.yaml"]["description"]
