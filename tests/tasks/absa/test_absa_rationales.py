"""The rationales stage (import and live through the ledger) and masked-LM pre-training in the train stage."""

from __future__ import annotations

import json
import re
from typing import Sequence

import pytest
from tiny_tagger import build_tiny_tagger_base

from protege.models.base import Generation, Prompt, SamplingParams
from protege.pipeline.recipe import parse_recipe
from protege.pipeline.runner import run_recipe
from protege.tasks.absa import tables as t

pytestmark = pytest.mark.usefixtures("one_thread")


def _analysis(target: str, level: str, extra: str = "") -> str:
    return f'Opinion Target 1: "{target}"\nAspect: Quality\nSentiment: {level}\nReasoning: it says so.{extra}'


REVIEWS = [  # (review, stars, teacher response)
    ("the screen is great and bright.", 5, _analysis("screen", "Very Positive")),
    ("the fan is noisy and slow.", 1, _analysis("fan", "Negative", "\n\nReview: made-up\nOpinion Target 1: x")),
    ("the keyboard is fine.", 3, _analysis("keyboard", "Positive")),  # disagrees with 3 stars
    ("the price is bad.", 2, _analysis("price", "Mild")),  # structured, no level: not parsed
    ("the battery life is good.", 4, "I am delighted: the battery life of this laptop carries me all day long."),
    ("the glass is bad.", 1, "Bad."),  # too short to use
]


def _write_reviews(path, rows=REVIEWS, drop_text_at=None) -> str:
    lines = []
    for i, (text, stars, response) in enumerate(rows):
        row = {"ID": 100 + i, "Text": text, "Overall": float(stars), "mixtral_response": response}
        if i == drop_text_at:
            row.pop("Text")
        lines.append(json.dumps(row))
    path.write_text("\n".join(lines) + "\n")
    return str(path)


class AnalysingTeacher:
    """Writes an analysis (polarity from cue words) or a rewrite, as the prompt asks."""

    backend, model_id = "fake", "rationale-script"

    def __init__(self) -> None:
        self.calls = 0

    def _answer(self, text: str) -> str:
        review = text.rsplit("Review:", 1)[1].strip()
        if text.startswith("Rewrite"):
            return f"In my own words: {review} That is how I honestly feel about it."
        level = "Negative" if re.search(r"noisy|slow|bad", review) else "Positive"
        return _analysis(review.split()[1], level) + "\nOverall: " + level + "<|im_end|>junk"

    def generate(self, prompts: Sequence[Prompt], params: SamplingParams) -> list[list[Generation]]:
        self.calls += len(prompts)
        return [[Generation(self._answer(p[-1]["content"]), 30, 40)] for p in prompts]

    def score(self, prompts, continuations):  # pragma: no cover - the stage never scores
        raise NotImplementedError

    def topk_logprobs(self, prompts, completions, k):  # pragma: no cover
        raise NotImplementedError


def _recipe(run_dir, **sections) -> dict:
    return {"name": "rationales-tiny", "family": "absa", "run_dir": str(run_dir), "seed": 0, "task": {},
            **sections}


def test_import_keeps_every_row_cleans_parses_and_measures_agreement(tmp_path):
    file = _write_reviews(tmp_path / "reviews.jsonl")
    run = run_recipe(parse_recipe(_recipe(tmp_path / "run", rationales={"mode": "import", "reviews_file": file})))
    table = run.records.read(t.RATIONALES).set_index("review_id")
    assert len(table) == 6 and list(table["kind"]) == ["analysis"] * 4 + ["rewrite"] * 2
    assert table.loc["101", "cut"] == "run_on" and "made-up" not in table.loc["101", "text"]
    assert "made-up" in table.loc["101", "raw"]  # the raw text is kept as it came
    assert list(table["parsed"]) == [True, True, True, False, False, False]
    assert list(table["overall"]) == ["positive", "negative", "positive", "", "", ""]
    assert list(table["usable"]) == [True] * 5 + [False]
    assert json.loads(table.loc["100", "opinions"])[0]["level"] == "very positive"
    q = run.read_json(t.RATIONALE_SUMMARY)["teachers"]["mixtral-8x7b-instruct"]
    assert q["analyses"] == 4 and q["parsed"] == 3 and q["parse_rate"] == pytest.approx(0.75)
    agree = q["star_agreement"]
    assert (agree["all"]["n"], agree["all"]["agree"]) == (3, 2)  # the 3-star review read as positive
    assert (agree["polar"]["n"], agree["polar"]["agree"]) == (2, 2)
    assert 0 < agree["all"]["interval"][0] < 2 / 3 < agree["all"]["interval"][1] < 1


def test_an_import_whose_rows_lack_the_text_field_fails_naming_it(tmp_path):
    file = _write_reviews(tmp_path / "reviews.jsonl", drop_text_at=2)
    with pytest.raises(ValueError, match=r"row 2 of .* has no 'Text' field.*rationales.text_field"):
        run_recipe(parse_recipe(_recipe(tmp_path / "run", rationales={"mode": "import", "reviews_file": file})))
    with pytest.raises(FileNotFoundError, match="rationales.reviews_file"):
        run_recipe(parse_recipe(_recipe(tmp_path / "run2", rationales={
            "mode": "import", "reviews_file": str(tmp_path / "missing.jsonl")})))


def test_live_asks_through_the_ledger_once_within_the_budget(tmp_path):
    file = _write_reviews(tmp_path / "reviews.jsonl")
    teacher = AnalysingTeacher()
    section = {"mode": "live", "reviews_file": file, "kinds": ["analysis", "rewrite"], "chunk_size": 4}
    recipe = _recipe(tmp_path / "run", teacher={"backend": "hf", "model": "rationale-script"}, rationales=section)
    run = run_recipe(parse_recipe(recipe), teacher=teacher)
    table = run.records.read(t.RATIONALES)
    assert teacher.calls == 12 and len(table) == 12
    analyses = table[table["kind"] == "analysis"]
    assert (analyses["cut"] == "chat_token").all() and not analyses["text"].str.contains("junk").any()
    q = run.read_json(t.RATIONALE_SUMMARY)["teachers"]["fake:rationale-script"]
    assert q["parse_rate"] == 1.0 and q["star_agreement"]["polar"]["rate"] == 1.0
    run_recipe(parse_recipe(recipe), teacher=teacher, force=("rationales",))
    assert teacher.calls == 12  # answered from the ledger
    small = {**recipe, "run_dir": str(tmp_path / "small"), "rationales": {**section, "max_calls": 5}}
    run = run_recipe(parse_recipe(small), teacher=teacher)
    assert len(run.records.read(t.RATIONALES)) == 5 and run.read_json(t.RATIONALE_SUMMARY)["budget"]["calls"] == 5


def _gold(path, rows) -> str:
    out = []
    for i, (term, cue, polarity) in enumerate(rows):
        sentence = f"the {term} is {cue}."
        out.append({"ID": f"{path.stem}{i}", "sentence": sentence,
                    "aspects": [{"from": 4, "to": 4 + len(term), "target": term, "polarity": polarity}]})
    path.write_text(json.dumps(out))
    return str(path)


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory):
    return build_tiny_tagger_base(tmp_path_factory.mktemp("mlm") / "encoder")


def _train_recipe(tmp_path, base, corpus: str) -> dict:
    gold = [("screen", "great", "positive"), ("fan", "bad", "negative"), ("keyboard", "fine", "neutral"),
            ("battery life", "good", "positive"), ("glass", "slow", "negative")]
    loop = {"steps": 3, "lr": 1e-3, "micro_batch_size": 4, "schedule": "constant", "tracker": None,
            "early_stopping": None}
    return _recipe(
        tmp_path / f"run-{corpus}",
        data={"seed_file": _gold(tmp_path / "seed.json", gold), "dev_file": _gold(tmp_path / "dev.json", gold[:2]),
              "test_file": _gold(tmp_path / "test.json", gold[2:])},
        rationales={"mode": "import", "reviews_file": _write_reviews(tmp_path / "reviews.jsonl")},
        train={"student": str(base), "max_length": 24, "seed_baseline": False, "loop": loop,
               "pretrain": {"corpus": corpus, "max_length": 48, "mask_prob": 0.3,
                            "loop": {"steps": 4, "lr": 1e-3, "micro_batch_size": 4, "tracker": None}}},
        evaluate={}, report={},
    )


@pytest.mark.parametrize("corpus, texts", [("rationales", 5), ("reviews", 5)])
def test_pretraining_runs_the_mlm_before_the_tagger_and_the_report_says_so(tmp_path, tiny_base, corpus, texts):
    run = run_recipe(parse_recipe(_train_recipe(tmp_path, tiny_base, corpus)))
    info = run.read_json(t.TRAINED)[t.STUDENT]["pretrained"]
    assert info["corpus"] == corpus and info["texts"] == texts and info["steps"] == 4
    assert info["teachers"] == ["mixtral-8x7b-instruct"] and info["last_loss"] > 0
    assert (run.artifacts / t.PRETRAINED / "config.json").is_file()
    assert not (run.artifacts / "checkpoints" / t.PRETRAINED).exists()
    report = (run.artifacts / "report.md").read_text()
    assert "pre-trained (masked LM)" in report and "Teacher rationales" in report


def test_pretraining_without_a_rationales_stage_is_an_error_naming_the_section(tmp_path, tiny_base):
    recipe = _train_recipe(tmp_path, tiny_base, "rationales")
    recipe.pop("rationales")
    with pytest.raises(ValueError, match="add a 'rationales:' section"):
        run_recipe(parse_recipe(recipe))
