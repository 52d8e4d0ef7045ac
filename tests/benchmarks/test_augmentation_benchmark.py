"""The augmentation benchmark's recipes validate, its cell list parses, its units (one child process per arm or
cell) wait for their base and skip finished rows, and its table and crossover plot are built from raw rows (the
runs themselves need the real models: see benchmarks/README.md)."""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path

import pytest

from protege.pipeline.recipe import parse_recipe

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "augmentation.py"
spec = importlib.util.spec_from_file_location("augmentation_bench", SCRIPT)
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


@pytest.mark.parametrize("dataset", sorted(bench.DATASETS))
def test_base_recipes_validate(dataset, tmp_path):
    recipe = parse_recipe(bench.base_recipe(dataset, 50, 0, tmp_path / "run", quick=False))
    assert recipe.train.train_table is None and recipe.data.pool_size == 1


def test_cells_parse_and_refuse_unknown_names():
    assert bench.parse_cells("sst2:50:1:answer_aug,sentiment-laptop:100:3:new") == [
        ("sst2", 50, 1.0, "answer_aug"), ("sentiment-laptop", 100, 3.0, "new")]
    with pytest.raises(SystemExit, match="strategy one of"):
        bench.parse_cells("sst2:50:1:paraphrase")
    assert bench.parse_cells("sst2:50:3:none") == [("sst2", 50, 0.0, "none")]  # the base alone, whatever R


def _plan(argv, done=()):
    args = bench.parse(argv)
    return {u.name: (u.argv[1:], u.after) for u in bench.units(args, argv, set(done))}


def test_grid_units_wait_for_their_base_and_skip_finished_cells():
    argv = ["grid", "--cells", "sst2:50:1:new,sst2:50:3:rephrase,bbc-news:50:1:new", "--quick"]
    child = ("--jobs", "1", "--child")
    plan = _plan(argv, done={"sst2:50:0:quick:1:new"})
    assert plan == {
        "grid-sst2-50-none": ((*argv, "--cells", "sst2:50:0:none", *child), ()),
        "grid-sst2-50-R3-rephrase": ((*argv, "--cells", "sst2:50:3:rephrase", *child), ("grid-sst2-50-none",)),
        "grid-bbc-news-50-none": ((*argv, "--cells", "bbc-news:50:0:none", *child), ()),
        "grid-bbc-news-50-R1-new": ((*argv, "--cells", "bbc-news:50:1:new", *child), ("grid-bbc-news-50-none",))}
    assert list(plan) == ["grid-sst2-50-none", "grid-sst2-50-R3-rephrase", "grid-bbc-news-50-none",
                          "grid-bbc-news-50-R1-new"]  # each base can run beside the other
    # A child runs exactly its unit: the options it appends override the parent's.
    child_args = bench.parse(list(plan["grid-sst2-50-R3-rephrase"][0]))
    assert bench.grid_cells(child_args) == [("sst2", 50, 3.0, "rephrase")] and child_args.jobs == 1
    finished = {"sst2:50:0:quick:none", "sst2:50:0:quick:3:rephrase", "sst2:50:0:quick:1:new"}
    assert list(_plan(argv, finished)) == ["grid-bbc-news-50-none", "grid-bbc-news-50-R1-new"]


def test_compare_units_open_with_the_none_arm_which_makes_the_base():
    argv = ["compare", "--datasets", "sst2", "bbc-news", "--arms", "report", "--budget", "40"]
    plan = _plan(argv, done={"bbc-news:100:0:d80-n250:report:40"})
    assert list(plan) == ["compare-sst2-100-none", "compare-sst2-100-report"]
    assert plan["compare-sst2-100-report"][1] == ("compare-sst2-100-none",)
    child_args = bench.parse(list(plan["compare-sst2-100-report"][0]))
    assert (child_args.datasets, child_args.arms, child_args.budget) == (["sst2"], ["report"], 40)
    assert _plan(argv, done={"sst2:100:0:d80-n250:report:40", "bbc-news:100:0:d80-n250:report:40"}) == {}


def test_table_pairs_arms_on_the_same_test_texts_and_draws_the_crossover(tmp_path):
    def row(key, ratio, correct, **more):
        acc = sum(correct) / len(correct)
        return {"key": key, "dataset": "sst2", "seed_size": 50, "seed": 0, "test_n": 40, "ratio": ratio, "cell": key,
                "accuracy": acc, "interval": [acc - 0.1, acc + 0.1], "correct": correct, **more}

    spend = {"units": 50, "generated": 50, "scored": 0}
    rows = [row("sst2:50:0:none", 0, [1, 0, 0, 1] * 10, strategy="none"),
            row("sst2:50:0:1:rephrase", 1, [1, 1, 0, 1] * 10, strategy={"strategy": "rephrase"}, spend=spend,
                kept_examples=40),
            row("sst2:50:0:3:new", 3, [1, 0, 0, 1] * 10, strategy={"strategy": "new"}, spend=spend,
                kept_examples=0)]
    (tmp_path / "grid.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    bench.table_cmd(argparse.Namespace(out=tmp_path))
    summary = json.loads((tmp_path / "summary.json").read_text())
    by = {(r["ratio"], r["strategy"]): r for r in summary["grid"]}
    assert by[(1, "rephrase")]["vs_none"]["difference"] == 0.25 and not by[(1, "rephrase")]["vs_none"]["inside_noise"]
    assert by[(3, "new")]["vs_none"]["difference"] == 0 and by[(0, "none")]["vs_none"] is None
    assert "| sst2 | 50 | 1 | rephrase | 50 (50 gen + 0 scored) | 40 |" in (tmp_path / "summary.md").read_text()
    assert (tmp_path / "crossover.png").stat().st_size > 1000


@pytest.mark.parametrize("cell, makes_base", [("sst2:50:0:none", True), ("sst2:50:1:new", False)])
def test_only_the_opening_child_runs_the_base_recipe(cell, makes_base, tmp_path, monkeypatch):
    """A sibling child must not resume the shared base: the run would hold its lock while others copy it."""
    import protege.pipeline.runner as runner

    made, cells = [], []
    monkeypatch.setattr(runner, "run_recipe", lambda recipe: made.append(recipe.run_dir))
    monkeypatch.setattr(bench, "run_cell", lambda folder, recipe, name, augment: cells.append(name) or {"cell": name})
    (tmp_path / "grid.jsonl").write_text(json.dumps({"key": "sst2:50:0:d80-n250:none"}) + "\n")
    parent = ["grid", "--cells", "sst2:50:1:new", "--out", str(tmp_path), "--runs", str(tmp_path / "runs")]
    bench.grid_cmd(bench.parse([*parent, "--cells", cell, "--jobs", "1", "--child"]))
    assert len(made) == makes_base and cells == ([] if makes_base else ["R1-new"])
    bench.grid_cmd(bench.parse([*parent, "--jobs", "1"]))  # in process: every loop resumes its base, as before
    assert len(made) == makes_base + 1
