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


def test_a_user_error_inside_a_stage_is_one_message_and_exit_2_and_debug_shows_the_traceback(tmp_path):
    (tmp_path / "texts.csv").write_text("text,label\n" + "".join(f"t{i},{'abc'[i % 3]}\n" for i in range(30)))
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: x\ntask: {labels: [a, b]}\ndata: {source: texts.csv, dev_size: 2, test_size: 3}\n")
    result = runner.invoke(app, ["--log-jsonl", str(tmp_path / "log.jsonl"), "run", str(recipe)])
    assert result.exit_code == 2
    assert "gold labels not in task.labels" in result.output and "'c' (10x)" in result.output
    assert "Traceback" not in result.output
    logged = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert any(e["event"] == "error" and e["code"] == "user_error" for e in logged)
    debug = runner.invoke(app, ["--debug", "run", str(recipe)])
    assert debug.exit_code != 0 and isinstance(debug.exception, ValueError)


def test_an_unknown_only_stage_and_a_missing_recipe_exit_2(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: x\ntask: {labels: [a, b]}\ndata: {source: texts.csv}\n")
    result = runner.invoke(app, ["run", str(recipe), "--only", "trian"])
    assert result.exit_code == 2 and "not in this recipe" in result.output
    missing = runner.invoke(app, ["run", str(tmp_path / "nope.yaml")])
    assert missing.exit_code == 2 and f"not found: {tmp_path / 'nope.yaml'}" in missing.output


def test_version_and_help_examples_are_valid(tmp_path):
    from protege import __version__

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and __version__ in result.output
    help_text = runner.invoke(app, ["run", "--help"]).output
    assert "train.loop.steps=10" in help_text
    from protege.pipeline.recipe import load_recipe

    (tmp_path / "r.yaml").write_text("name: x\ntask: {labels: [a, b]}\ntrain: {}\n")
    assert load_recipe(tmp_path / "r.yaml", {"train.loop.steps": 10}).train.loop.steps == 10


def test_jsonl_events_are_plain_text_and_warnings_carry_a_code(tmp_path):
    from protege.core import console

    log = tmp_path / "events.jsonl"
    console.configure(quiet=True, jsonl=log)
    try:
        console.info("[bold]annotate[/bold] done")
        console.warn("[yellow]few[/yellow] dev texts", code="calibration_default")
        console.headline("student 90 %")
    finally:
        console.configure()
    logged = [json.loads(line) for line in log.read_text().splitlines()]
    assert logged[0]["message"] == "annotate done"
    assert logged[1] == {**logged[1], "code": "calibration_default", "message": "few dev texts"}
    assert logged[2]["event"] == "headline"


def test_configure_silences_third_party_logging_bars_and_deprecation_notices():
    import warnings

    import transformers

    from protege.core import console

    console.configure()
    assert transformers.logging.get_verbosity() == transformers.logging.ERROR
    assert not transformers.utils.logging.is_progress_bar_enabled()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        console.silence_third_party()
        exec("import warnings\nwarnings.warn('is_gradient_checkpointing is deprecated', FutureWarning)",
             {"__name__": "transformers.modeling_utils"})
        exec("import warnings\nwarnings.warn('ours', FutureWarning)", {"__name__": "protege.something"})
    assert [str(w.message) for w in caught] == ["ours"]
