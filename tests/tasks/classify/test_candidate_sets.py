"""Candidate sets at annotation: the scored threshold/mass rule or a generating teacher's list, their coverage of
the gold label on dev and test, and the warning when they miss it."""

from __future__ import annotations

import json

import pytest
from fakes import ScriptedTeacher, text_of
from test_annotate_stage import LABELS, recipe, source  # noqa: F401 (fixture)

from protege.core import console
from protege.core.run import Run
from protege.models.base import Generation
from protege.pipeline.recipe import parse_recipe
from protege.pipeline.runner import run_recipe
from protege.tasks.classify.candidate_prompt import candidate_prompt, parse_candidates
from protege.tasks.classify.task import ClassificationTask


class ListingTeacher(ScriptedTeacher):
    """Scores like ScriptedTeacher; asked for candidates, lists the label the text names and ``extra``'s pick."""

    def __init__(self, extra):
        super().__init__()
        self.extra, self.asked = extra, 0

    def generate(self, prompts, params):
        out = []
        for prompt in prompts:
            self.asked += 1
            named = next(label for label in LABELS if label in text_of(prompt).split("Text:", 1)[-1])
            out.append([Generation(text=self.extra(named), prompt_tokens=30, completion_tokens=4)])
        return out


@pytest.fixture
def teacher(monkeypatch):
    holder = {}

    def make(config):
        return holder["teacher"]

    monkeypatch.setattr("protege.models.factory.make_teacher", make)
    return holder


def _warnings(log):
    return [json.loads(line) for line in log.read_text().splitlines() if '"warning"' in line]


def test_scored_sets_report_their_gold_coverage_on_dev_and_test(tmp_path, source, teacher):  # noqa: F811
    teacher["teacher"] = ScriptedTeacher()
    # No calibration: the teacher leans to "positive", so texts naming another label get two candidates.
    run_recipe(recipe(tmp_path, source, calibration="none", ensemble=False, candidate_threshold=0.9))
    run = Run(tmp_path / "run")
    summary = run.read_json("annotate.json")["candidates"]
    table = run.records.read("annotated")
    for split in ("dev", "test"):
        rows = table[table["split"] == split]
        held = [g in c for g, c in zip(rows["gold"], rows["candidates"])]
        sizes = [len(c) for c in rows["candidates"]]
        assert summary[split]["n"] == len(rows) == 9
        assert summary[split]["coverage"] == pytest.approx(sum(held) / 9, abs=1e-4)
        assert summary[split]["mean_size"] == pytest.approx(sum(sizes) / 9, abs=1e-4)
    assert summary["source"] == "scores" and summary["unparsed"] == 0


def test_a_generating_teacher_lists_the_sets_and_an_unreadable_answer_falls_back(tmp_path, source, teacher):  # noqa: F811
    # Lists the named label and "positive"; for neutral texts it answers nothing usable.
    listing = ListingTeacher(lambda named: "I cannot say." if named == "neutral" else f"{named}, positive")
    teacher["teacher"] = listing
    log = tmp_path / "events.jsonl"
    console.configure(quiet=True, jsonl=log)
    try:
        run_recipe(recipe(tmp_path, source, candidate_source="generate", calibration="none", ensemble=False,
                          candidate_threshold=0.01))
    finally:
        console.configure()
    run = Run(tmp_path / "run")
    table = run.records.read("annotated")
    assert listing.asked == len(table)
    for gold, cands in zip(table["gold"], table["candidates"]):
        expected = ["positive"] if gold == "neutral" else sorted({gold, "positive"})  # fallback: top label only
        assert sorted(cands) == expected
    summary = run.read_json("annotate.json")["candidates"]
    assert summary["unparsed"] == (table["gold"] == "neutral").sum()
    assert [w["code"] for w in _warnings(log)] == ["candidates_unparsed"]  # 2 in 3 dev sets hold gold
    # Rerunning asks nothing again: the ledger answers every candidate question it already paid for.
    again = ListingTeacher(lambda named: "negative")
    teacher["teacher"] = again
    run_recipe(recipe(tmp_path, source, candidate_source="generate", calibration="none", ensemble=False,
                      candidate_threshold=0.01), force=("annotate",))
    assert again.asked == 0


def test_sets_that_never_hold_the_gold_label_are_warned_with_the_coverage(tmp_path, source, teacher):  # noqa: F811
    wrong = {"negative": "positive", "positive": "neutral", "neutral": "negative"}
    teacher["teacher"] = ListingTeacher(lambda named: wrong[named])
    log = tmp_path / "events.jsonl"
    console.configure(quiet=True, jsonl=log)
    try:
        run_recipe(recipe(tmp_path, source, candidate_source="generate", min_dev=5))
    finally:
        console.configure()
    (warning,) = [w for w in _warnings(log) if w["code"] == "candidates_miss_gold"]
    assert warning["coverage"] == 0.0 and "never hold the gold label on 0.0% of 9 gold dev texts" in warning["message"]


def test_the_answer_parse_reads_labels_through_verbalizers_and_whole_words_only():
    task = ClassificationTask(labels=["pos", "neg", "very pos"], verbalizers={"pos": ["positive"]})
    assert parse_candidates(task, "Positive, neg") == [0, 1]
    assert parse_candidates(task, "very pos") == [2]  # not also "pos"
    assert parse_candidates(task, "negative; nothing else") == []  # "neg" inside "negative" is not the label
    prompt = candidate_prompt(task, "some text")
    assert prompt[-1]["role"] == "user" and "positive, neg, very pos" in prompt[-1]["content"]
    assert "some text" in prompt[-1]["content"]


def test_the_train_stage_trains_on_the_candidates_column(tmp_path, source, teacher):  # noqa: F811
    from tiny_encoder import build_tiny_encoder

    teacher["teacher"] = ScriptedTeacher()
    from transformers import AutoConfig, BertForSequenceClassification

    encoder = build_tiny_encoder(tmp_path / "encoder")
    three = AutoConfig.from_pretrained(encoder)
    three.num_labels = 3
    BertForSequenceClassification(three).save_pretrained(encoder)  # the tiny encoder, with a three-label head
    # No calibration: texts naming negative or neutral get two candidates, the others one.
    raw = {"name": "t", "run_dir": str(tmp_path / "run"), "teacher": {"batch_size": 4},
           "task": {"labels": LABELS}, "data": {"source": str(source), "dev_size": 9, "test_size": 9},
           "annotate": {"calibration": "none", "ensemble": False, "candidate_threshold": 0.9},
           "select": {"budget": 12, "strategy": "balanced"},
           "train": {"student": str(encoder), "targets": "candidates", "max_length": 16, "gold_seed_baseline": False,
                     "learning_curve": [], "loop": {"steps": 4, "micro_batch_size": 6, "tracker": None,
                                                    "log_every": 1}}}
    run_recipe(parse_recipe(raw))
    run = Run(tmp_path / "run")
    assert run.read_json("train.json")["students"]["student"]["steps"] == 4
    logged = [json.loads(line) for line in (run.artifacts / "metrics" / "student.jsonl").read_text().splitlines()]
    assert len(logged) == 4 and all(0 <= r["prediction_in_set"] <= 1 for r in logged)
