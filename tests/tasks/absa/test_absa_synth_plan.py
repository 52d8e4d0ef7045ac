"""Planning the two synthesis streams, the masks, reading answers, the brainstorm file, polarity scoring."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from protege.tasks.absa import synth_plan as plan
from protege.tasks.absa.polarity import calibrate_polarities, score_aspects
from protege.tasks.absa.prompts import MASK, context_windows, mask_aspects, mask_span, read_written
from protege.tasks.absa.student import raw_aspects
from protege.tasks.absa.task import AbsaExample, AbsaTask, Aspect

S = "The screen is great but the battery life is bad."
EX = AbsaExample("7", S, (Aspect(4, 10, "screen", "positive"), Aspect(28, 40, "battery life", "negative")))


def test_masks_hide_aspects_or_only_words_outside_them():
    assert mask_aspects(EX) == f"The {MASK} is great but the {MASK} is bad."
    windows = context_windows(EX, 2)
    assert windows and all(not (s < a.end and a.start < e) for s, e in windows for a in EX.aspects)
    assert [S[s:e] for s, e in windows][:2] == ["is great", "great but"]
    assert mask_span(S, windows[0]) == f"The screen {MASK} but the battery life is bad."


def test_plan_instance_counts_methods_parents_and_planned_pairs():
    empty = AbsaExample("8", "Nothing to see here.")
    requests = plan.plan_instance(
        [EX, empty, EX.__class__("9", "The fan is noisy.", (Aspect(4, 7, "fan", "negative"),))],
        plan.INSTANCE_METHODS,
        2,
        3,
        2,
        random.Random(0),
    )
    methods = [r.method for r in requests]
    assert methods.count("paraphrase_one") == 4 and methods.count("paraphrase_comb") == 3
    assert all("8" not in r.parents for r in requests)  # a seed without aspects writes nothing
    comb = next(r for r in requests if r.method == "paraphrase_comb")
    assert sorted(comb.parents) == ["7", "9"] and len(comb.planned) == 3
    assert next(r for r in requests if r.method == "aspect_mask").planned == ()


def test_keypoint_patterns_follow_their_definition():
    b = plan.Brainstorm(
        ["laptop"],
        ["screen", "keyboard", "fan", "price"],
        {"positive": ["great"], "negative": ["awful"], "neutral": ["ordinary"]},
    )
    requests = plan.plan_keypoint(
        b,
        "laptops",
        60,
        {"mixed": 1.0, "implicit": 1.0},
        3,
        ["positive", "negative", "neutral"],
        random.Random(1),
    )
    mixed = [r for r in requests if r.method == "mixed"]
    assert mixed and all(len({p for _, p in r.planned}) >= 2 for r in mixed)
    implicit = [r for r in requests if r.method == "implicit"]
    assert implicit and all("opinion words" not in r.prompt[0]["content"] for r in implicit)


def test_brainstorm_file_errors_name_the_key(tmp_path):
    path = tmp_path / "b.yaml"
    path.write_text("subjects: [laptop]\naspects: [screen]\nopinions: {positive: [great], negative: []}\n")
    with pytest.raises(ValueError, match="opinions.negative is empty"):
        plan.read_brainstorm(path, ["positive", "negative"])
    with pytest.raises(FileNotFoundError, match="brainstorm_file"):
        plan.read_brainstorm(tmp_path / "missing.yaml", ["positive"])
    assert plan.read_list("1. laptop\n- notebook\n* Laptop\n\n") == ["laptop", "notebook"]


@pytest.mark.parametrize(
    "text, sentence, pairs",
    [
        (
            'Sentence: The fan is loud.\nAspects: [["fan", "negative"]]',
            "The fan is loud.",
            [("fan", "negative")],
        ),
        ("**Sentence:** Nice keys.\n**Aspects:** keys | positive", "Nice keys.", [("keys", "positive")]),
        ("", None, []),
        ("[1, 2]", None, []),
    ],
)
def test_read_written_never_raises(text, sentence, pairs):
    got = read_written(text)
    assert got.sentence == sentence and got.parsed.pairs == pairs


def test_raw_labels_keep_only_verbatim_terms_with_canonical_polarities():
    task = AbsaTask()
    got = raw_aspects(
        S,
        [
            ["Screen", "positive"],
            ["battery life", "neg"],
            ["battery life", "negative"],
            ["screen", "positive"],
        ],
        task,
    )
    assert got == (Aspect(4, 10, "screen", "positive"), Aspect(28, 40, "battery life", "negative"))


class _Scores:
    def score(self, prompts, continuations):
        return [[math.log(0.6), math.log(0.1), math.log(0.2), math.log(0.1)] for _ in prompts]


def test_polarity_scores_group_words_and_mean_calibration_removes_the_prior():
    words = {"positive": ["positive", "good"], "negative": ["negative"], "neutral": ["neutral"]}
    logp = score_aspects(_Scores(), [(S, "screen"), (S, "fan")], words)
    np.testing.assert_allclose(np.exp(logp[0]), [0.7, 0.2, 0.1])
    probs = calibrate_polarities(logp, "none")
    np.testing.assert_allclose(probs[0], [0.7, 0.2, 0.1])
    # every aspect scored alike: the mean prior is exactly that distribution, so calibration leaves it uniform
    np.testing.assert_allclose(calibrate_polarities(logp, "mean"), np.full((2, 3), 1 / 3))
