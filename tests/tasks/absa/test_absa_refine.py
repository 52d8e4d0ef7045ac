"""Merging the student's predictions into synthetic labels, on hand-made cases."""

from __future__ import annotations

import pytest

from protege.tasks.absa.refine import RefineConfig, refine_labels
from protege.tasks.absa.tags import TaggedSpan
from protege.tasks.absa.task import Aspect

S = "The battery life is great but the fan is loud and the screen dim."
#    0123456789012345678901234567890123456789012345678901234567890123


def A(term: str, polarity: str) -> Aspect:
    start = S.index(term)
    return Aspect(start, start + len(term), term, polarity)


def P(term: str, polarity: str, confidence: float) -> TaggedSpan:
    start = S.index(term)
    return TaggedSpan(start, start + len(term), polarity, confidence)


TEACHER = (A("battery", "positive"), A("fan", "negative"), A("screen", "positive"))


def _run(student, **config):
    labels, summary = refine_labels([S], [TEACHER], [student], RefineConfig(**config))
    return labels[0], summary


def test_agreement_keeps_everything():
    student = [P("battery", "positive", 0.5), P("fan", "negative", 0.6), P("screen", "positive", 0.7)]
    label, summary = _run(student)
    assert label == TEACHER
    assert (summary.kept, summary.replaced, summary.dropped, summary.added) == (3, 0, 0, 0)
    assert summary.change_rate == 0.0 and summary.sentences_changed == 0


def test_confident_disagreement_replaces_span_or_polarity():
    student = [P("battery life", "positive", 0.95),  # wider span
               P("fan", "neutral", 0.99),  # other polarity
               P("screen", "negative", 0.5)]  # not confident: the fallback decides
    label, summary = _run(student, threshold=0.9)
    assert label == (A("battery life", "positive"), A("fan", "neutral"), A("screen", "positive"))
    assert (summary.kept, summary.replaced, summary.dropped) == (1, 2, 0)
    assert summary.change_rate == pytest.approx(2 / 3) and summary.sentences_changed == 1

    label, summary = _run(student, threshold=0.9, fallback="drop")
    assert label == (A("battery life", "positive"), A("fan", "neutral"))
    assert (summary.kept, summary.replaced, summary.dropped) == (0, 2, 1)
    assert summary.as_dict()["change_rate"] == pytest.approx(1.0)


def test_missed_aspects_follow_the_fallback_and_new_ones_need_add_threshold():
    student = [P("fan", "negative", 0.8), P("dim", "negative", 0.97)]
    label, summary = _run(student)  # add_threshold None: never add
    assert label == TEACHER and summary.kept == 3 and summary.added == 0
    label, summary = _run(student, fallback="drop", add_threshold=0.95)
    assert label == (A("fan", "negative"), A("dim", "negative"))
    assert (summary.kept, summary.dropped, summary.added, summary.teacher) == (1, 2, 1, 3)
    assert summary.change_rate == pytest.approx(3 / 3)


def test_best_overlap_answers_and_result_has_no_overlaps():
    # Two student spans over "battery": the more overlapping one answers; a confident student span that covers
    # two teacher aspects replaces both, and the result keeps it once.
    teacher = (A("battery", "positive"), A("life", "positive"))
    student = [TaggedSpan(0, 5, "negative", 0.99), P("battery life", "positive", 0.93)]
    labels, summary = refine_labels([S], [teacher], [student], RefineConfig(threshold=0.9))
    assert labels[0] == (A("battery life", "positive"),)
    assert summary.replaced == 2 and summary.added == 0


def test_empty_labels_and_alignment_check():
    labels, summary = refine_labels(["No aspects."], [()], [[]], RefineConfig())
    assert labels == [()] and summary.teacher == 0 and summary.change_rate == 0.0
    with pytest.raises(ValueError, match="align"):
        refine_labels([S, S], [TEACHER], [[]], RefineConfig())
