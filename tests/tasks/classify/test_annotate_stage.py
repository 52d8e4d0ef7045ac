"""The annotate and select stages end to end on a scripted teacher whose answers are known in advance."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from fakes import ScriptedTeacher

from protege.pipeline.runner import run_recipe
from protege.pipeline.recipe import parse_recipe
from protege.core.run import Run

LABELS = ["negative", "positive", "neutral"]


@pytest.fixture
def source(tmp_path):
    # Each text names its own label: a teacher without its prior would be always right.
    rows = [{"text": f"item {i} is {LABELS[i % 3]}", "label": LABELS[i % 3]} for i in range(60)]
    path = tmp_path / "texts.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def recipe(tmp_path, source, **annotate):
    return parse_recipe({
        "name": "t", "run_dir": str(tmp_path / "run"), "teacher": {"batch_size": 4},
        "task": {"labels": LABELS, "templates": ["{instruction}\nText: {text}", "Text: {text}\n{instruction}"]},
        "data": {"source": str(source), "dev_size": 9, "test_size": 9, "test_fraction": 0.2},
        "annotate": {"chunk_size": 8, **annotate},
        "select": {"budget": 6, "strategy": "balanced"},
    })


@pytest.fixture
def teachers(monkeypatch):
    """Each pipeline stage asks the factory for a teacher; hand out scripted ones and keep them for counting."""
    made: list[ScriptedTeacher] = []
    queue: list[ScriptedTeacher] = []

    def make(config):
        made.append(queue.pop(0) if queue else ScriptedTeacher())
        return made[-1]

    monkeypatch.setattr("protege.models.factory.make_teacher", make)
    return made, queue


def test_annotate_calibrates_away_a_label_prior_and_reports_each_variant(tmp_path, source, teachers):
    run_recipe(recipe(tmp_path, source, min_dev=5))  # 9 dev texts: allowed to choose here
    run = Run(tmp_path / "run")
    table = run.records.read("annotated")
    inputs = pd.concat([run.records.read(t) for t in ("pool", "dev", "test")])
    assert sorted(table["id"]) == sorted(inputs["id"])
    probs = np.stack(table["teacher_probs"].tolist())
    assert probs.sum(1) == pytest.approx(np.ones(len(table)))
    report = run.read_json("annotate.json")
    # Raw scores say "positive" for every text; both calibrations recover the label the text names.
    assert report["variants"]["none"]["dev"]["accuracy"] == pytest.approx(1 / 3, abs=1e-3)
    assert report["variants"]["none"]["dev"]["largest_class_share"] == 1.0
    assert report["variants"]["contextual+ensemble"]["test"]["accuracy"] == 1.0
    assert report["variants"]["mean"]["dev"]["accuracy"] == 1.0
    assert report["calibration"] != "none" and report["chosen_by"] == "best dev macro-F1 on 9 texts"
    assert (table["teacher_label"] == table["gold"]).all()
    assert table["raw_scores"].map(len).eq(2).all()  # two templates
    assert set(table["calibration"]) == {report["calibration"]}

    selected = run.records.read("selected")
    assert len(selected) == 6 and set(selected["split"]) == {"pool"}
    assert selected["teacher_label"].value_counts().to_dict() == {label: 2 for label in LABELS}
    assert selected["reason"].str.startswith("balanced:").all()


def test_no_calibration_keeps_the_collapse_and_marks_unsure_texts(tmp_path, source, teachers):
    run_recipe(recipe(tmp_path, source, calibration="none", ensemble=False, candidate_threshold=0.9))
    table = Run(tmp_path / "run").records.read("annotated")
    assert set(table["teacher_label"]) == {"positive"}
    assert set(table["calibration"]) == {"none"}
    # A text naming "negative" gets close to even odds between the two: an unsure teacher, two candidates.
    negatives = table[table["gold"] == "negative"]
    assert all(sorted(c) == ["negative", "positive"] for c in negatives["candidates"])


def test_rerun_makes_no_backend_call(tmp_path, source, teachers):
    made, _ = teachers
    run_recipe(recipe(tmp_path, source))
    first = Run(tmp_path / "run").records.read("annotated")
    run_recipe(recipe(tmp_path, source), force=("annotate",))
    assert made[-1].calls == 0
    again = Run(tmp_path / "run").records.read("annotated")
    assert again["teacher_probs"].map(list).tolist() == first["teacher_probs"].map(list).tolist()


def test_killed_run_resumes_without_repeating_or_losing_anything(tmp_path, source, teachers):
    made, queue = teachers
    # Dies after 36 prompts: 9 ledger batches of 4, inside the third chunk of 8 texts x 2 templates. (A kill in
    # the middle of a batch would lose that batch's answers, the only work a kill can cost.)
    queue.append(ScriptedTeacher(fail_after=36))
    with pytest.raises(KeyboardInterrupt):
        run_recipe(recipe(tmp_path, source))
    run = Run(tmp_path / "run")
    partial = run.records.read("annotated")
    assert 0 < len(partial) < 40 and partial["id"].is_unique
    run_recipe(recipe(tmp_path, source))
    table = run.records.read("annotated")
    texts = sum(len(run.records.read(t)) for t in ("pool", "dev", "test"))
    assert len(table) == texts and table["id"].is_unique
    content_free = 3 * 2
    # Every prompt reached the backend exactly once over both runs.
    assert made[0].calls + made[1].calls == texts * 2 + content_free
    assert run.ledger.totals().calls == texts * 2 + content_free


def test_a_different_teacher_is_asked_again(tmp_path, source, teachers):
    made, queue = teachers
    run_recipe(recipe(tmp_path, source))
    queue.append(ScriptedTeacher(model_id="other"))
    run_recipe(recipe(tmp_path, source), force=("annotate",))
    assert made[-1].calls > 0
    assert set(Run(tmp_path / "run").records.read("annotated")["teacher"]) == {"fake:other"}


def test_llkd_selection_reads_first_round_student_probabilities(tmp_path, source, teachers):
    run_recipe(recipe(tmp_path, source))
    run = Run(tmp_path / "run")
    pool = run.records.read("pool")
    # The first-round student is lost on the texts naming "neutral" and sure of all the others.
    unsure = pool["gold"].eq("neutral").to_numpy()
    run.records.append("student_pool", [
        {"id": i, "student_probs": [1 / 3] * 3 if u else [0.98, 0.01, 0.01]} for i, u in zip(pool["id"], unsure)
    ])
    llkd = recipe(tmp_path, source).model_copy(update={"select": recipe(tmp_path, source).select.model_copy(
        update={"strategy": "llkd", "budget": 5, "llkd_min_teacher_confidence": 0.0})})
    run_recipe(llkd, force=("select",))
    selected = run.records.read("selected")
    assert len(selected) == 5 and set(selected["gold"]) == {"neutral"}
    assert selected["reason"].str.contains("student entropy 1.00").all()


def test_llkd_without_student_probabilities_says_what_is_missing(tmp_path, source, teachers):
    base = recipe(tmp_path, source)
    llkd = base.model_copy(update={"select": base.select.model_copy(update={"strategy": "llkd"})})
    with pytest.raises(ValueError, match="student_pool"):
        run_recipe(llkd)


def test_seed_class_prior_sets_the_quotas_or_says_the_seed_is_missing(tmp_path, source, teachers):
    base = recipe(tmp_path, source)
    seeded = base.model_copy(update={"select": base.select.model_copy(update={"class_prior": "seed"})})
    with pytest.raises(ValueError, match="data.seed_size"):
        run_recipe(seeded)
    run = Run(tmp_path / "run")
    run.records.replace("seed", [{"id": f"s{i}", "text": "x", "gold_index": g} for i, g in enumerate([0, 0, 0, 1])],
                        stage="test")
    run_recipe(seeded, force=("select",))
    selected = run.records.read("selected")
    # Seed shares 3/4, 1/4, 0 of a budget of 6: 4.5, 1.5, 0 rounded to quotas 5, 1, 0.
    assert selected["teacher_index"].value_counts().sort_index().tolist() == [5, 1]
    assert selected["reason"].str.contains("quota 5|quota 1").all()


def test_calibration_auto_on_fewer_dev_texts_than_min_dev_warns_and_uses_the_default(tmp_path, source, teachers):
    from protege.core import console

    log = tmp_path / "events.jsonl"
    console.configure(quiet=True, jsonl=log)
    try:
        run_recipe(recipe(tmp_path, source))  # 9 dev texts, min_dev 30
    finally:
        console.configure()
    report = Run(tmp_path / "run").read_json("annotate.json")
    assert report["calibration"] == "mean+ensemble" and report["chosen_by"].startswith("default (9 gold dev texts")
    warnings = [json.loads(line) for line in log.read_text().splitlines() if '"warning"' in line]
    assert [w["code"] for w in warnings] == ["calibration_default"]
