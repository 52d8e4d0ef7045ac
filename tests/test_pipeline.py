"""The runner: stages in order, skipped when their section is absent, not repeated once done unless forced."""

from __future__ import annotations

import sys
import types
from typing import Optional

import pytest

from protege import pipeline
from protege.recipe import Recipe, Section


class Count(Section):
    n: int = 2


class ToyRecipe(Recipe):
    first: Optional[Count] = None
    second: Optional[Count] = None


CALLS: list[str] = []


def first(ctx):
    CALLS.append("first")
    ctx.run.records.append("numbers", [{"id": str(i), "value": i} for i in range(ctx.config.n)], stage=ctx.name)
    return {"written": ctx.config.n}


def second(ctx):
    CALLS.append("second")
    total = int(ctx.run.records.read("numbers")["value"].sum())
    ctx.run.write_json("total.json", {"total": total})
    return {"total": total}


@pytest.fixture
def toy_stages(monkeypatch):
    module = types.ModuleType("toy_stages")
    module.first, module.second = first, second
    monkeypatch.setitem(sys.modules, "toy_stages", module)
    monkeypatch.setattr(pipeline, "STAGES", {"first": "toy_stages:first", "second": "toy_stages:second"})
    CALLS.clear()


def test_stages_run_in_order_and_talk_through_the_run(tmp_path, toy_stages):
    recipe = ToyRecipe(name="t", run_dir=tmp_path / "run", first=Count(n=4), second=Count())
    run = pipeline.run_recipe(recipe)
    assert CALLS == ["first", "second"]
    assert run.read_json("total.json") == {"total": 0 + 1 + 2 + 3}
    assert [s["name"] for s in run.ledger.stages()] == ["first", "second"]
    assert (tmp_path / "run" / "recipe.yaml").read_text().startswith("name: t")


def test_done_stages_are_skipped_and_force_reruns(tmp_path, toy_stages):
    recipe = ToyRecipe(name="t", run_dir=tmp_path / "run", first=Count(n=2), second=Count())
    pipeline.run_recipe(recipe)
    pipeline.run_recipe(recipe)
    assert CALLS == ["first", "second"]
    pipeline.run_recipe(recipe, force=("second",))
    assert CALLS == ["first", "second", "second"]


def test_absent_section_skips_its_stage_and_unknown_names_are_refused(tmp_path, toy_stages):
    recipe = ToyRecipe(name="t", run_dir=tmp_path / "run", first=Count(n=1))
    assert pipeline.planned_stages(recipe) == ["first"]
    with pytest.raises(ValueError, match="not in this recipe"):
        pipeline.run_recipe(recipe, only=("second",))


def test_a_stage_that_crashed_runs_again(tmp_path, toy_stages, monkeypatch):
    recipe = ToyRecipe(name="t", run_dir=tmp_path / "run", first=Count(n=1), second=Count())

    def broken(ctx):
        raise RuntimeError("boom")

    monkeypatch.setattr(sys.modules["toy_stages"], "second", broken)
    with pytest.raises(RuntimeError):
        pipeline.run_recipe(recipe)
    monkeypatch.setattr(sys.modules["toy_stages"], "second", second)
    run = pipeline.run_recipe(recipe)
    assert CALLS == ["first", "second"]
    assert run.ledger.stage_status("second") == "done"
