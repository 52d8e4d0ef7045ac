"""The augmentation benchmark's recipes validate, its cell list parses, and its table and crossover plot are
built from raw rows (the runs themselves need the real models: see benchmarks/README.md)."""

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
