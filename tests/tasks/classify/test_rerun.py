"""Editing a finished run's recipe and running it again recomputes that stage and what reads it, and only that:
the teacher is asked nothing it was asked before, and the report shows the new setting."""

from __future__ import annotations

import json

import pytest
import yaml

from protege.pipeline.recipe import parse_recipe
from protege.pipeline.runner import run_recipe

from fake_teacher import CueTeacher
from tiny_encoder import build_tiny_encoder, separable_texts


class Recording(CueTeacher):
    """The cue teacher, remembering every prompt the backend (not the ledger) answered."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[str] = []

    def score(self, prompts, continuations):
        self.asked += [p if isinstance(p, str) else p[-1]["content"] for p in prompts]
        return super().score(prompts, continuations)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("rerun")
    texts, labels = separable_texts(160, seed=5)
    path = root / "reviews.jsonl"
    path.write_text("\n".join(json.dumps({"text": t, "label": ["negative", "positive"][y]})
                              for t, y in zip(texts, labels)))
    return root, path, build_tiny_encoder(root / "encoder")


def recipe(root, path, encoder, budget: int):
    return parse_recipe({
        "name": "rerun", "run_dir": str(root / "run"), "family": "classification", "teacher": {},
        "task": {"labels": ["negative", "positive"]},
        "data": {"source": str(path), "seed_size": 10, "dev_size": 20, "test_size": 30, "pool_size": 100},
        "annotate": {"calibration": "none"},
        "select": {"budget": budget, "strategy": "confidence"},
        "train": {"student": str(encoder), "max_length": 16, "gold_seed_baseline": False,
                  "loop": {"epochs": 2, "lr": 3e-3, "micro_batch_size": 16, "tracker": None}},
        "evaluate": {"measure_speed": False},
        "report": {},
    })


def test_a_changed_budget_reruns_select_and_what_follows_and_pays_nothing_twice(data):
    root, path, encoder = data
    first = Recording()
    run = run_recipe(recipe(root, path, encoder, budget=40), teacher=first)
    assert first.asked and "40 teacher-labelled" in (run.artifacts / "report.md").read_text()
    started = {s["name"]: s["started_at"] for s in run.ledger.stages()}

    again = Recording()
    run = run_recipe(recipe(root, path, encoder, budget=70), teacher=again)
    now = {s["name"]: s["started_at"] for s in run.ledger.stages()}
    rerun = [name for name in now if now[name] != started[name]]
    assert rerun == ["select", "train", "evaluate", "report"]
    assert not set(again.asked) & set(first.asked)  # nothing asked twice (here: nothing asked at all)
    assert len(run.records.read("selected")) == 70
    assert "70 teacher-labelled" in (run.artifacts / "report.md").read_text()
    assert yaml.safe_load((run.path / "stages" / "select.yaml").read_text())["select"]["budget"] == 70
