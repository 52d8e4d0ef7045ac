"""A whole classification run on synthetic data: data, annotate, first student, LLKD selection, train, augment,
evaluate, report."""

import json

import pytest

from protege.pipeline.runner import run_recipe
from protege.pipeline.recipe import parse_recipe

from fake_teacher import CueTeacher
from tiny_encoder import build_tiny_encoder, separable_texts


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("classification-run")
    # From this start the student learns the cue the teacher misses on 'music' texts (84-86 % for four of five
    # starts; from seed 0 it copies the teacher, 70 %, and leaves augmentation no disagreement to mine).
    encoder = build_tiny_encoder(root / "encoder", seed=1)
    texts, labels = separable_texts(480, seed=11)
    data = root / "reviews.jsonl"
    data.write_text("\n".join(json.dumps({"text": t, "label": ["negative", "positive"][y]})
                              for t, y in zip(texts, labels)))
    recipe = parse_recipe({
        "name": "synthetic", "run_dir": str(root / "run"), "seed": 0,
        "teacher": {"backend": "hf", "model": "cue-teacher"},
        "task": {"labels": ["negative", "positive"]},
        "data": {"source": str(data), "seed_size": 24, "dev_size": 48, "test_size": 64, "pool_size": 240},
        "annotate": {"calibration": "none"},
        "first_student": {"examples": 80, "epochs": 2},
        "select": {"budget": 160, "strategy": "llkd"},
        "train": {"student": str(encoder), "max_length": 16, "learning_curve": [0.5],
                  "loop": {"epochs": 8, "lr": 3e-3, "micro_batch_size": 16, "schedule": "constant", "eval_every": 10,
                           "tracker": None, "early_stopping": {"metric": "dev_accuracy", "mode": "max", "patience": 4}}},
        "augment": {"max_rounds": 2, "max_errors": 8, "per_error": 2},
        "evaluate": {"speed_examples": 8, "speed_batch_size": 4},
        "report": {},
    })
    teacher = CueTeacher()
    return run_recipe(recipe, teacher=teacher), teacher


def test_student_beats_majority_and_metrics_are_complete(finished_run):
    run, _ = finished_run
    m = run.read_json("metrics.json")
    assert set(m["models"]) == {"teacher", "student", "gold_seed_student"}
    # The teacher is wrong on texts mentioning 'music' (5 of 18 filler words drawn 5 times: ~80 % of texts
    # escape it), so it sits well above chance but below a perfect score.
    assert 0.6 < m["models"]["teacher"]["accuracy"] < 0.95
    assert m["models"]["student"]["accuracy"] > m["majority"]["accuracy"] + 0.2
    assert "student_not_above_majority" not in {f["code"] for f in m["flags"]}
    assert 0 <= m["agreement"] <= 1 and m["kept"]["macro_f1"] > 0.5
    assert m["speed"]["teacher"]["examples"] == 8 and m["speed"]["student"]["throughput"] > 0
    curve = sorted(m["learning_curve"], key=lambda p: p["examples"])
    augmented = run.read_json("augment.json")["kept_examples"]
    assert [p["examples"] for p in curve] == [80, 160 + augmented]
    assert "student" in m["headline"] and "majority" in m["headline"]
    # The teacher's candidate sets, measured on the same gold test texts (and on gold dev).
    assert m["candidates"]["test"]["n"] == 64 and m["candidates"]["dev"]["n"] == 48
    # A set always holds the teacher's top label, so it covers gold at least as often (coverage is rounded to 4 places).
    assert m["models"]["teacher"]["accuracy"] - 1e-4 <= m["candidates"]["test"]["coverage"] <= 1


def test_llkd_selection_used_the_first_student(finished_run):
    run, _ = finished_run
    pool_probs = run.records.read("student_pool")
    assert set(pool_probs["id"]) == set(run.records.read("pool")["id"])
    selected = run.records.read("selected")
    assert len(selected) == 160 and set(selected["strategy"]) == {"llkd"}


def test_augmented_rows_name_their_dev_parent(finished_run):
    run, teacher = finished_run
    augment = run.read_json("augment.json")
    assert augment["history"][0]["round"] == 0
    rows = run.records.read("augmented")
    assert teacher.generated > 0  # the teacher is wrong on 'music' texts, so the student errs on some dev texts
    dev_ids = set(run.records.read("dev")["id"])
    assert len(rows) and set(rows["parent_id"]) <= dev_ids
    assert all(len(p) == 2 and abs(sum(p) - 1) < 1e-6 for p in rows["teacher_probs"])


def test_report_has_every_plot(finished_run):
    run, _ = finished_run
    page = (run.artifacts / "report.html").read_text()
    for plot in ("confusion", "reliability", "learning_curve", "speed"):
        assert f'id="plot-{plot}"' in page
        assert (run.artifacts / "report_files" / f"{plot}.png").stat().st_size > 1000
    markdown = (run.artifacts / "report.md").read_text()
    assert "report_files/confusion.png" in markdown
    assert "candidate sets on gold test: hold the gold label / mean size" in markdown
