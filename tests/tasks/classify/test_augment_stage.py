"""The augment stage run for real on a tiny encoder with a scripted teacher: the report prompt reaches the
teacher, the budget is spent exactly as counted, R and the strategy are written to the run, and a budget ratio
below 1 is refused before any teacher call."""

import json
import re
import shutil

import pytest

from protege.core.errors import UserError
from protege.pipeline.recipe import parse_recipe
from protege.pipeline.runner import run_recipe

from fake_teacher import CueTeacher
from tiny_encoder import build_tiny_encoder, separable_texts


class CountingTeacher(CueTeacher):
    """CueTeacher that also counts scored prompts and answers every augmentation prompt: the label it is asked
    for ('clearly <label>'), or for a rewrite the label of the text's cue word."""

    def __init__(self) -> None:
        super().__init__()
        self.scored, self.prompts = 0, []

    def score(self, prompts, continuations):
        self.scored += len(prompts)
        return super().score(prompts, continuations)

    def asked_label(self, text: str) -> str:
        self.prompts.append(text)
        asked = re.search(r"clearly '(\w+)'", text)
        return asked.group(1) if asked else ("positive" if " good" in text else "negative")


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A run finished through train (student on the gold seed plus teacher labels); augment is added per test."""
    root = tmp_path_factory.mktemp("augment-stage")
    encoder = build_tiny_encoder(root / "encoder")
    texts, labels = separable_texts(300, seed=5)
    data = root / "reviews.jsonl"
    data.write_text("\n".join(json.dumps({"text": t, "label": ["negative", "positive"][y]})
                              for t, y in zip(texts, labels)))
    recipe = {
        "name": "augment", "run_dir": str(root / "base"), "seed": 0,
        "teacher": {"backend": "hf", "model": "cue-teacher"},
        "task": {"labels": ["negative", "positive"]},
        "data": {"source": str(data), "seed_size": 20, "dev_size": 40, "test_size": 40, "pool_size": 60},
        "annotate": {"calibration": "none"},
        "select": {"budget": 30, "strategy": "confidence"},
        "train": {"student": str(encoder), "max_length": 16, "learning_curve": [], "gold_seed_baseline": False,
                  "use_gold": True,
                  "loop": {"epochs": 2, "lr": 3e-3, "micro_batch_size": 16, "schedule": "constant", "eval_every": 5,
                           "tracker": None}},
    }
    run_recipe(parse_recipe(recipe), teacher=CountingTeacher())
    return root, recipe


def augment(base, name, section, teacher=None, **more):
    root, recipe = base
    target = root / name
    shutil.copytree(root / "base", target)
    teacher = teacher or CountingTeacher()
    run = run_recipe(parse_recipe({**recipe, "run_dir": str(target), "augment": section, **more}), teacher=teacher)
    return run, teacher


def test_report_prompt_reaches_the_teacher_and_spend_is_exact(base):
    run, teacher = augment(base, "report", {"prompt": {"kind": "report", "hard_negatives": 3}, "max_rounds": 3,
                                            "max_errors": 4, "per_error": 2, "mine": "seed",
                                            "early_stop": {"patience": 3},
                                            "budget": {"units": 40, "generation_cost": 3}})
    summary = run.read_json("augment.json")
    spend = summary["spend"]
    # Every completion and every scored prompt the teacher saw is counted, at 3 units a completion, 1 a prompt.
    assert (spend["generated"], spend["scored"]) == (teacher.generated, teacher.scored) and teacher.generated
    assert spend["units"] == 3 * teacher.generated + teacher.scored <= 40
    assert spend["paid_requests"]["score"] == teacher.scored
    assert summary["strategy"]["ratio"] == 2.0 and summary["strategy"]["strategy"] == "new"
    assert summary["strategy"]["ratio_spent"] == spend["units"] / 20
    assert all("precision" in p and "it said" in p for p in teacher.prompts)
    rows = run.records.read("augmented")
    assert set(rows["strategy"]) == {"new"} and set(rows["parent_id"].dropna()) <= set(run.records.read("seed")["id"])


def test_auto_strategy_by_ratio_is_written_to_the_run_and_report(base):
    run, teacher = augment(base, "auto", {"strategy": "auto", "budget": {"units": 20},
                                          "thresholds": {"rephrase_from": 2, "new_from": 5}},
                           evaluate={"measure_speed": False}, report={})
    plan = run.read_json("augment.json")["strategy"]
    assert plan["ratio"] == 1.0 and plan["strategy"] == "answer_aug" and plan["requested"] == "auto"
    assert teacher.generated == 0 and teacher.scored > 0  # answers only: no text written
    rows = run.records.read("augmented")
    assert set(rows["text"]) <= set(run.records.read("seed")["text"])
    report = (run.artifacts / "report.md").read_text()
    assert "budget ratio R = budget / gold seed | 20 / 20 = 1" in report
    assert "answer_aug (auto: rephrase from R 2, new from 5)" in report


def test_budget_ratio_below_one_is_refused_before_any_teacher_call(base):
    teacher = CountingTeacher()
    with pytest.raises(UserError, match=r"R = 10 units / 20 seed texts = 0.50 is below 1"):
        augment(base, "refused", {"strategy": "new", "budget": {"units": 10}}, teacher=teacher)
    assert teacher.generated == teacher.scored == 0


def test_seed_only_student_with_no_pool_rephrases_and_keeps_labels(base, tmp_path):
    """The benchmark's route: no unlabelled pool, the student on the gold seed alone (train_table null)."""
    root, recipe = base
    recipe = {**recipe, "run_dir": str(tmp_path / "seed-only"), "data": {**recipe["data"], "pool_size": 1},
              "annotate": {"calibration": "none", "tables": ["dev", "test"]},
              "train": {**recipe["train"], "train_table": None},
              "augment": {"strategy": "rephrase", "budget": {"units": 30}, "max_errors": 10, "max_rounds": 3,
                          "early_stop": {"patience": 3}}}
    recipe.pop("select")
    teacher = CountingTeacher()
    run = run_recipe(parse_recipe(recipe), teacher=teacher)
    assert run.read_json("train.json")["students"]["student"]["teacher_labelled"] == run.read_json(
        "augment.json")["kept_examples"]
    rows = run.records.read("augmented")
    spend = run.read_json("augment.json")["spend"]
    assert spend["scored"] == 0 and spend["generated"] == teacher.generated <= 30  # rewrites keep their label
    dev = run.records.read("annotated").set_index("id")
    for parent, probs in zip(rows["parent_id"], rows["teacher_probs"]):
        assert list(probs) == list(dev.loc[parent, "teacher_probs"])
    assert all("Rewrite this text" in p for p in teacher.prompts)
