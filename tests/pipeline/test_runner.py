"""The runner on a throwaway family declared in this file: order, skipping, forcing, and change-aware re-runs.

Adding a stage (and here a whole family) takes this one file: a config, a function and a registry entry.
"""

from __future__ import annotations

import sqlite3

import pytest
import yaml

from protege.core.section import VOLATILE, Section
from protege.pipeline import families
from protege.pipeline.recipe import RecipeError, parse_recipe
from protege.pipeline.runner import plan, run_recipe
from protege.stage import Family, Output, Stage

from pydantic import Field


class Count(Section):
    n: int = 2
    chunk: int = Field(1, json_schema_extra=VOLATILE)  # how the work is cut: never a reason to recompute


CALLS: list[str] = []
FAIL: set[str] = set()


def first(ctx):
    CALLS.append("first")
    ctx.run.records.append("numbers", [{"id": str(i), "value": i} for i in range(ctx.config.n)], stage=ctx.name)
    return {"written": ctx.config.n}


def second(ctx):
    CALLS.append("second")
    if "second" in FAIL:
        raise RuntimeError("boom")
    total = int(ctx.run.records.read("numbers")["value"].sum()) * ctx.config.n
    ctx.run.write_json("total.json", {"total": total})
    return {"total": total}


def third(ctx):
    CALLS.append("third")
    ctx.run.write_json("words.json", {"words": ctx.config.n})
    return {}


TOY = Family(
    name="toy", description="a throwaway family", task=None,
    outputs=(Output("numbers", "table", "numbers"), Output("total.json", "artifact", "their sum", path="total.json"),
             Output("words.json", "artifact", "a count", path="words.json")),
    stages=(Stage("first", Count, first, "write numbers", writes=("numbers",)),
            Stage("second", Count, second, "sum them", reads=("numbers",), writes=("total.json",)),
            Stage("third", Count, third, "independent of the others", writes=("words.json",))),
)


@pytest.fixture(autouse=True)
def toy_family(monkeypatch):
    monkeypatch.setitem(families.FAMILIES, "toy", TOY)
    CALLS.clear()
    FAIL.clear()


def recipe(tmp_path, **sections):
    return parse_recipe({"name": "t", "run_dir": str(tmp_path / "run"), "family": "toy", **sections})


def test_stages_run_in_order_and_talk_through_the_run(tmp_path):
    run = run_recipe(recipe(tmp_path, first={"n": 4}, second={"n": 1}))
    assert CALLS == ["first", "second"]
    assert run.read_json("total.json") == {"total": 0 + 1 + 2 + 3}
    assert [s["name"] for s in run.ledger.stages()] == ["first", "second"]
    assert (tmp_path / "run" / "recipe.yaml").read_text().startswith("name: t")
    assert yaml.safe_load((run.path / "stages" / "first.yaml").read_text())["first"]["n"] == 4


def test_done_stages_are_skipped_and_force_cascades_to_readers(tmp_path):
    r = recipe(tmp_path, first={"n": 2}, second={}, third={})
    run_recipe(r)
    run_recipe(r)
    assert CALLS == ["first", "second", "third"]
    run_recipe(r, force=("first",))
    assert CALLS[3:] == ["first", "second"]  # third reads nothing first writes


def test_a_changed_setting_reruns_that_stage_and_what_reads_it(tmp_path):
    run_recipe(recipe(tmp_path, first={"n": 3}, second={"n": 1}, third={}))
    CALLS.clear()
    run = run_recipe(recipe(tmp_path, first={"n": 3}, second={"n": 10}, third={}))
    assert CALLS == ["second"]
    assert run.read_json("total.json") == {"total": 30}
    CALLS.clear()
    run = run_recipe(recipe(tmp_path, first={"n": 2}, second={"n": 10}, third={}))
    assert CALLS == ["first", "second"]
    assert run.read_json("total.json") == {"total": 10}  # the old numbers table was cleared, not appended to
    CALLS.clear()
    run_recipe(recipe(tmp_path, first={"n": 2, "chunk": 7}, second={"n": 10}, third={}))
    assert CALLS == []  # a volatile field changes nothing


def test_plan_says_why_and_dry_run_touches_nothing(tmp_path):
    run = run_recipe(recipe(tmp_path, first={"n": 3}, second={}))
    steps = plan(recipe(tmp_path, first={"n": 4}, second={}), run)
    assert [(s.name, s.run, s.reason) for s in steps] == [("first", True, "settings changed"),
                                                          ("second", True, "first re-runs")]
    assert CALLS == ["first", "second"]


def test_a_missing_producer_and_unknown_stage_names_are_refused_before_running(tmp_path):
    with pytest.raises(RecipeError, match="add a 'first:' section"):
        run_recipe(recipe(tmp_path, second={}))
    with pytest.raises(RecipeError, match="not in this recipe"):
        run_recipe(recipe(tmp_path, first={}), only=("second",))
    assert CALLS == []


def test_a_section_of_another_family_names_that_family(tmp_path):
    with pytest.raises(RecipeError, match="section 'respond' belongs to the lm family"):
        recipe(tmp_path, first={}, respond={})


def test_a_stage_that_crashed_runs_again_and_keeps_what_it_saved(tmp_path):
    r = recipe(tmp_path, first={"n": 1}, second={})
    FAIL.add("second")
    with pytest.raises(RuntimeError):
        run_recipe(r)
    FAIL.clear()
    run = run_recipe(r)
    assert CALLS == ["first", "second", "second"]
    assert run.ledger.stage_status("second") == "done"
    assert plan(r, run)[1].reason == "done earlier"


def test_a_run_directory_from_before_signatures_resumes_from_its_recipe(tmp_path):
    r = recipe(tmp_path, first={"n": 3}, second={})
    run = run_recipe(r)
    with sqlite3.connect(run.ledger.path) as conn:  # what an older protege left: no signatures
        conn.execute("UPDATE stages SET signature=NULL, inputs=NULL")
    CALLS.clear()
    run_recipe(r)
    assert CALLS == []
    run_recipe(recipe(tmp_path, first={"n": 3}, second={"n": 5}))
    assert CALLS == ["second"]


def test_an_older_run_whose_recipe_no_longer_validates_runs_again(tmp_path):
    r = recipe(tmp_path, first={"n": 3}, second={})
    run = run_recipe(r)
    with sqlite3.connect(run.ledger.path) as conn:
        conn.execute("UPDATE stages SET signature=NULL, inputs=NULL")
    (run.path / "recipe.yaml").write_text("name: t\nrun_dir: x\nfamily: toy\nfirst: {count: 3}\n")  # old shape
    CALLS.clear()
    run = run_recipe(r)
    assert CALLS == ["first", "second"] and run.read_json("total.json") == {"total": 3 * 2}


def test_inspect_says_which_stages_are_stale_and_who_wrote_each_table(tmp_path):
    from protege.pipeline.status import status

    run_recipe(recipe(tmp_path, first={"n": 3}, second={}, third={}))
    run = run_recipe(recipe(tmp_path, first={"n": 4}, second={}, third={}), only=("third",))
    state = {s["name"]: s["state"] for s in status(run)["stages"]}
    assert state == {"first": "stale", "second": "stale", "third": "current"}
    assert status(run)["records"] == {"numbers": {"rows": 3, "written_by": ["first"]}}


def test_dry_run_prints_the_plan_and_loads_nothing(tmp_path):
    from typer.testing import CliRunner

    from protege.cli import app

    path = tmp_path / "toy.yaml"
    path.write_text(f"name: t\nrun_dir: {tmp_path / 'run'}\nfamily: toy\nfirst: {{n: 2}}\nsecond: {{}}\n")
    result = CliRunner().invoke(app, ["--quiet", "--log-jsonl", "-", "run", str(path), "--dry-run"])
    assert result.exit_code == 0, result.output
    (event,) = [e for e in map(__import__("json").loads, result.output.splitlines()) if e["event"] == "dry_run"]
    assert [(s["stage"], s["runs"], s["reason"]) for s in event["stages"]] == [("first", True, "new"),
                                                                               ("second", True, "new")]
    assert event["stages"][1]["reads"] == ["numbers"] and event["stages"][1]["writes"] == ["artifacts/total.json"]
    assert CALLS == [] and not (tmp_path / "run").exists()
