"""ABSA scores against hand-computed values."""

from __future__ import annotations

import pytest

from protege.tasks.absa.ground import normalise
from protege.tasks.absa.metrics import (
    absa_scores, aspect_scores, confusion, generation_rates, matched_polarities, multi_polarity_ids,
    pair_scores, polarity_scores,
)
from protege.tasks.absa.parse import parse_pairs
from protege.tasks.absa.task import AbsaTask, Aspect

LABELS = ("positive", "negative", "neutral")


def A(term: str, polarity: str, start: int = 0) -> Aspect:
    return Aspect(start, start + len(term), term, polarity)


GOLD = {
    "s1": (A("screen", "positive"), A("battery life", "negative", 10)),
    "s2": (A("keyboard", "neutral"),),
    "s3": (),
    "s4": (A("fan", "negative"), A("fan", "negative", 20)),  # the same term twice: a multiset
}
PRED = {
    "s1": (A("Screen", "positive"), A("battery  life", "positive", 10)),  # case and spaces do not matter
    "s2": (),
    "s3": (A("price", "negative"),),
    "s4": (A("fan", "negative"),),
    "other": (A("ignored", "positive"),),  # not a gold sentence
}


def test_pair_and_aspect_scores_by_hand():
    # pairs: gold 5, predicted 4 (the "other" sentence is not scored); matched: screen/pos and one fan/neg = 2
    pair = pair_scores(GOLD, PRED)
    assert (pair.matched, pair.predicted, pair.gold) == (2, 4, 5)
    assert pair.precision == pytest.approx(0.5) and pair.recall == pytest.approx(0.4)
    assert pair.f1 == pytest.approx(2 * 0.5 * 0.4 / 0.9)
    # terms only: screen, battery life, fan = 3 matched
    aspect = aspect_scores(GOLD, PRED)
    assert (aspect.matched, aspect.precision, aspect.recall) == (3, 0.75, 0.6)
    assert aspect.f1 == pytest.approx(2 * 0.75 * 0.6 / 1.35)


def test_empty_sets_score_zero_not_nan():
    empty = pair_scores({"s": ()}, {"s": ()})
    assert (empty.precision, empty.recall, empty.f1) == (0.0, 0.0, 0.0)
    only_gold = pair_scores({"s": (A("x", "positive"),)}, {})
    assert only_gold.recall == 0.0 and only_gold.predicted == 0


def test_subset_scores_only_those_sentences():
    pair = pair_scores(GOLD, PRED, ids={"s4"})
    assert (pair.matched, pair.predicted, pair.gold, pair.recall) == (1, 1, 2, 0.5)


def test_polarity_scores_and_confusion_by_hand():
    gold = ["positive", "positive", "negative", "neutral"]
    pred = ["positive", "negative", "negative", "positive"]
    scores = polarity_scores(gold, pred, LABELS)
    # per class F1: positive P=1/2 R=1/2 -> 0.5; negative P=1/2 R=1 -> 2/3; neutral 0 -> macro = (0.5+2/3+0)/3
    assert scores["accuracy"] == 0.5 and scores["n"] == 4
    assert scores["macro_f1"] == pytest.approx((0.5 + 2 / 3) / 3)
    table = confusion(gold, pred, LABELS)
    assert table == {"positive": {"positive": 1, "negative": 1, "neutral": 0},
                     "negative": {"positive": 0, "negative": 1, "neutral": 0},
                     "neutral": {"positive": 1, "negative": 0, "neutral": 0}}
    assert polarity_scores([], [], LABELS) == {"accuracy": 0.0, "macro_f1": 0.0, "n": 0}
    with pytest.raises(ValueError):
        polarity_scores(["positive"], [], LABELS)


def test_matched_polarities_pairs_terms_in_order():
    gold, pred = matched_polarities(GOLD, PRED)
    assert gold == ["positive", "negative", "negative"] and pred == ["positive", "positive", "negative"]


def test_multi_polarity_breakdown():
    assert multi_polarity_ids(GOLD) == {"s1"}
    report = absa_scores(GOLD, PRED, LABELS, {"multi_polarity": multi_polarity_ids(GOLD)})
    multi = report["multi_polarity"]
    assert multi["sentences"] == 1 and multi["pair"]["matched"] == 1 and multi["pair"]["gold"] == 2
    assert multi["aspect"]["recall"] == 1.0 and multi["polarity"]["accuracy"] == 0.5
    assert multi["confusion"]["negative"]["positive"] == 1
    assert report["all"]["sentences"] == 4 and report["all"]["polarity"]["n"] == 3


def test_generation_rates_by_hand():
    task = AbsaTask()
    answers = [('[["screen", "positive"], ["fan", "negative"]]', "The screen is great."),
               ("no idea", "Nice keyboard."),
               ("keyboard | pos ; price | lukewarm", "Nice keyboard.")]
    parsed = [parse_pairs(a) for a, _ in answers]
    normalised = [normalise(s, p.pairs, task) for p, (_, s) in zip(parsed, answers)]
    rates = generation_rates(parsed, normalised)
    # 2 of 3 answers parsed; 4 pairs, 1 with an unknown polarity; of the 3 readable, "fan" is not grounded
    assert rates["parse_rate"] == pytest.approx(2 / 3) and rates["pairs"] == 4
    assert rates["grounding_rate"] == pytest.approx(2 / 3) and rates["kept_rate"] == pytest.approx(2 / 4)
