"""The icl stage: zero-shot, plain ICL and feedback ICL on a scripted teacher that learns only from corrections."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import pytest

from protege.core.errors import UserError
from protege.core.run import Run
from protege.pipeline.recipe import parse_recipe
from protege.pipeline.runner import run_recipe
from protege.tasks.classify.demos import CORRECTIVE, feedback_choice

pytest.importorskip("bm25s")

LABELS = ["negative", "positive"]
CUES = {"negative": "bad", "positive": "good"}


def text_of(prompt) -> str:
    return prompt if isinstance(prompt, str) else prompt[-1]["content"]


class CorrectableTeacher:
    """Labels a text by its cue word, but inverts texts about 'music', unless the prompt shows a music text with a
    corrective note ('was wrong'): then it gets them right. Records every prompt it is sent."""

    backend = "fake"
    model_id = "correctable"

    def __init__(self) -> None:
        self.prompts: list = []

    def score(self, prompts: Sequence, continuations: Sequence[Sequence[str]]) -> list[list[float]]:
        out = []
        for prompt, words in zip(prompts, continuations):
            self.prompts.append(prompt)
            body = text_of(prompt)
            before, query = body.rsplit("Text:", 1)
            corrected = any("music" in block and "was wrong" in block for block in before.split("Text:"))
            flip = "music" in query.split() and not corrected
            out.append([0.0 if (CUES[w.strip()] in query.split()) != flip else -3.0 for w in words])
        return out

    def generate(self, prompts, params):  # pragma: no cover - the icl stage only scores
        raise NotImplementedError

    def topk_logprobs(self, prompts, completions, k):  # pragma: no cover
        raise NotImplementedError


@pytest.fixture
def teacher(monkeypatch):
    made: list[CorrectableTeacher] = []

    def make(config):
        made.append(CorrectableTeacher())
        return made[-1]

    monkeypatch.setattr("protege.models.factory.make_teacher", make)
    return made


def write_source(tmp_path, music: bool = True, labels=LABELS):
    rows = []
    for i in range(80):
        label = labels[i % len(labels)]
        topic = "music" if music and i % 4 < 2 else "film"
        rows.append({"text": f"the {topic} number {i} was {CUES[label]}", "label": label})
    path = tmp_path / "texts.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def recipe(tmp_path, source, seed_size=24, **icl):
    return parse_recipe({
        "name": "t", "run_dir": str(tmp_path / "run"), "teacher": {"batch_size": 4},
        "task": {"labels": LABELS},
        "data": {"source": str(source), "seed_size": seed_size, "dev_size": 0, "test_size": 16},
        "icl": {"shots": 3, "wrong_first": 2, "prior_shots": 2, "chunk_size": 5, **icl},
    })


def test_feedback_icl_shows_wrong_answers_first_and_recovers_what_plain_icl_misses(tmp_path, teacher):
    run_recipe(recipe(tmp_path, write_source(tmp_path)))
    run = Run(tmp_path / "run")
    summary = run.read_json("icl.json")
    methods = summary["methods"]
    # Every music text is inverted by zero-shot and plain ICL; feedback's corrective notes fix them.
    assert methods["zero_shot"]["test"]["accuracy"] == pytest.approx(0.5)
    assert methods["icl"]["test"]["accuracy"] == pytest.approx(0.5)
    assert methods["feedback"]["test"]["accuracy"] == 1.0 and methods["feedback"]["test"]["macro_f1"] == 1.0
    low, high = methods["icl"]["test"]["accuracy_interval"]
    assert low < 0.5 < high and methods["icl"]["test"]["macro_f1_interval"][0] <= methods["icl"]["test"]["macro_f1"]
    # The priors: plain ICL gets exactly the pool's music texts wrong.
    music = sum("music" in t for t in run.records.read("seed")["text"])
    assert 0 < music < 24 and summary["priors"]["pool_wrong"] == music
    assert summary["priors"]["pool_accuracy"] == pytest.approx(1 - music / 24, abs=1e-4)
    assert methods["feedback"]["fills"] == 0
    # Demonstrations cost tokens: zero-shot < plain ICL (3 shots) and feedback (3 shots with notes).
    tokens = {m: e["prompt_tokens_per_text"] for m, e in methods.items()}
    assert tokens["zero_shot"] < tokens["icl"] < tokens["feedback"]
    assert all(e["seconds_per_text"] > 0 and e["texts_sent"] == 16 for e in methods.values())

    sent = teacher[-1].prompts
    feedback = [text_of(p) for p in sent if "First answer:" in text_of(p)]
    assert len(feedback) == 16
    for body in feedback:
        blocks = body.split("\n\nText: ")[1:-1]  # the demonstrations, in order
        notes = ["was wrong" in b for b in blocks]
        assert len(blocks) == 3 and notes == [True, True, False]  # two wrong first, then one right
        assert all("music" in b for b, wrong in zip(blocks, notes) if wrong)
        assert CORRECTIVE.split(",")[0] in body
    table = run.records.read("icl")
    assert len(table) == 48 and set(table["method"]) == {"zero_shot", "icl", "feedback"}
    assert np.allclose(np.stack(table["teacher_probs"]).sum(1), 1.0)


def test_priors_leave_each_pool_text_out_and_a_rerun_sends_nothing(tmp_path, teacher):
    run_recipe(recipe(tmp_path, write_source(tmp_path), methods=["feedback"]))
    pool = Run(tmp_path / "run").records.read("seed")["text"].tolist()
    priors = [text_of(p) for p in teacher[-1].prompts if "First answer:" not in text_of(p)]
    queries = []
    for body in priors:  # sent shortest first, not in pool order
        demos, query = body.rsplit("Text: ", 1)
        queries.append(query.strip())
        assert f"Text: {queries[-1]}\n" not in demos
    assert sorted(queries) == sorted(pool)
    first = Run(tmp_path / "run").read_json("icl.json")
    before = len(teacher[-1].prompts)
    run_recipe(recipe(tmp_path, write_source(tmp_path), methods=["feedback"]), force=["icl"])
    again = Run(tmp_path / "run").read_json("icl.json")
    assert len(teacher[-1].prompts) == 0 and before > 0  # every call answered by the ledger
    assert again["methods"]["feedback"]["texts_sent"] == 0
    assert again["methods"]["feedback"]["seconds_per_text"] == first["methods"]["feedback"]["seconds_per_text"]
    assert again["methods"]["feedback"]["test"] == first["methods"]["feedback"]["test"]


def test_fills_are_counted_when_the_teacher_is_never_wrong(tmp_path, teacher):
    run_recipe(recipe(tmp_path, write_source(tmp_path, music=False), methods=["feedback"]))
    summary = Run(tmp_path / "run").read_json("icl.json")
    assert summary["priors"]["pool_wrong"] == 0
    assert summary["methods"]["feedback"]["fills"] == 2 * 16


def test_feedback_choice_takes_wrong_ones_first_in_ranking_order_then_fills():
    correct = np.array([True, False, True, True, False, True])
    assert feedback_choice([5, 4, 3, 2, 1, 0], correct, 4, 2) == ([4, 1, 5, 3], 0)
    assert feedback_choice([0, 2, 3, 1], correct, 3, 2) == ([1, 0, 2], 1)
    assert feedback_choice([0, 2], correct, 2, 0) == ([0, 2], 0)


@pytest.mark.parametrize("setting, match", [
    ({"shots": 30}, "fewer than the 30 needed"),
    ({"pool_size": 500}, "icl.pool_size = 500"),
    ({"seed_size": 0}, "no gold-labelled texts"),
])
def test_bad_pools_are_refused_before_any_teacher_call(tmp_path, teacher, setting, match):
    seed_size = setting.pop("seed_size", 24)
    with pytest.raises(UserError, match=match):
        run_recipe(recipe(tmp_path, write_source(tmp_path), seed_size=seed_size, **setting))
    assert all(not t.prompts for t in teacher)


def test_a_label_no_pool_text_has_is_refused(tmp_path, teacher):
    source = write_source(tmp_path)
    frame = pd.read_csv(source)
    # A third label, present only in two test-able texts: the stratified seed of 4 cannot hold it.
    frame.loc[:1, "label"] = "neutral"
    frame.to_csv(source, index=False)
    spec = recipe(tmp_path, source, seed_size=4, shots=2, prior_shots=1).model_dump()
    spec["task"]["labels"] = ["negative", "positive", "neutral"]
    spec["data"]["test_size"] = 2
    with pytest.raises(UserError, match=r"no pool text has the label\(s\) \['neutral'\]"):
        run_recipe(parse_recipe({k: v for k, v in spec.items() if v is not None}))
    assert all(not t.prompts for t in teacher)


def test_wrong_first_beyond_shots_is_a_recipe_error(tmp_path):
    with pytest.raises(ValueError, match="wrong_first = 5 is more than icl.shots = 3"):
        recipe(tmp_path, write_source(tmp_path), wrong_first=5)


@pytest.mark.parametrize("how", ["bm25", "random"])
def test_retrieval_over_an_empty_pool_is_refused_with_the_fix(how):
    from protege.tasks.classify.retrieval import Ranker

    with pytest.raises(UserError, match="retrieval over an empty pool.*data.seed_size"):
        Ranker([], how)


def test_evaluate_and_the_report_put_the_baselines_beside_the_student(tmp_path, teacher):
    from tiny_encoder import build_tiny_encoder

    spec = recipe(tmp_path, write_source(tmp_path)).model_dump(exclude_none=True)
    spec["data"]["dev_size"] = 8
    spec.update({"annotate": {"calibration": "mean", "min_dev": 4}, "select": {"budget": 20, "strategy": "random"},
                 "train": {"student": str(build_tiny_encoder(tmp_path / "encoder")), "max_length": 16,
                           "gold_seed_baseline": False, "learning_curve": [],
                           "loop": {"steps": 2, "micro_batch_size": 8, "tracker": None}},
                 "evaluate": {"speed_examples": 4}, "report": {}})
    run_recipe(parse_recipe(spec))
    run = Run(tmp_path / "run")
    icl, metrics = run.read_json("icl.json"), run.read_json("metrics.json")
    baselines = metrics["teacher_baselines"]
    assert set(baselines) == {"zero_shot", "icl", "feedback"}
    for method, entry in baselines.items():  # the same gold test texts as the student's, the same numbers
        assert entry["n"] == metrics["test_examples"] == 16
        assert entry["accuracy"] == icl["methods"][method]["test"]["accuracy"]
        assert entry["prompt_tokens_per_text"] == round(icl["methods"][method]["prompt_tokens_per_text"], 1)
    low, high = metrics["models"]["student"]["macro_f1_interval"]
    assert low <= metrics["models"]["student"]["macro_f1"] <= high
    report = (run.artifacts / "report.md").read_text()
    assert "| teacher feedback ICL |" in report and "teacher prompt tokens per text" in report
    # Labelling other texts than the students' test makes the baselines incomparable: said, not shown.
    spec["icl"]["tables"] = ["seed"]
    run_recipe(parse_recipe(spec))
    metrics = run.read_json("metrics.json")
    assert "not the 16 gold test texts" in metrics["teacher_baselines"]["mismatch"]
    assert "| teacher feedback ICL |" not in (run.artifacts / "report.md").read_text()
