"""The ABSA quickstart end to end on the real data and MiniLM (many minutes of CPU)."""

from __future__ import annotations

import time

import pytest
import yaml

from protege.pipeline.recipe import parse_recipe
from protege.pipeline.runner import run_recipe
from protege.tasks.absa import tables as t
from protege.tasks.absa.data import absa_folder, synthetic_folder

RECIPE = (
    __import__("pathlib").Path(__file__).parents[3] / "src" / "protege" / "recipes" / "absa-quickstart.yaml"
)


def _data_present() -> bool:
    try:
        absa_folder()
        synthetic_folder()
    except FileNotFoundError:
        return False
    return True


@pytest.mark.slow
@pytest.mark.skipif(not _data_present(), reason="needs ../shared/data/absa and the DS²-ABSA GPT-3.5 files")
def test_absa_quickstart_beats_the_seed_alone(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    data = yaml.safe_load(RECIPE.read_text())
    data["run_dir"] = str(tmp_path / "run")
    began = time.perf_counter()
    run = run_recipe(parse_recipe(data, str(RECIPE)))
    minutes = (time.perf_counter() - began) / 60
    m = run.read_json(t.METRICS)
    student = m["models"][t.STUDENT]["test"]["all"]["pair"]["f1"]
    seed = m["models"][t.SEED_STUDENT]["test"]["all"]["pair"]["f1"]
    print(f"absa quickstart: student {student:.3f}, seed only {seed:.3f} ({minutes:.1f} min)")
    assert student > seed and student > 0.25
    assert (run.artifacts / "report.html").exists()
