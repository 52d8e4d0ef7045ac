"""Selection strategies: budgets, reasons, and which texts each one keeps."""

from __future__ import annotations

import numpy as np
import pytest

from protege.tasks.classify import strategies


def test_confidence_keeps_the_surest_in_order_with_reasons():
    picks = strategies.most_confident(np.array([0.5, 0.9, 0.7, 0.95]), budget=2)
    assert [p.index for p in picks] == [3, 1]
    assert picks[0].reason == "confidence=0.95 rank 1/4"


def test_random_respects_budget_is_seeded_and_has_no_repeats():
    a = strategies.random_subset(50, 10, seed=3)
    assert len({p.index for p in a}) == 10
    assert [p.index for p in a] == [p.index for p in strategies.random_subset(50, 10, seed=3)]
    assert [p.index for p in a] != [p.index for p in strategies.random_subset(50, 10, seed=4)]
    assert len(strategies.random_subset(5, 10, seed=0)) == 5


def test_balanced_caps_each_teacher_label():
    labels = np.array([0] * 8 + [1] * 2 + [2] * 1)
    confidence = np.linspace(0.99, 0.5, len(labels))
    picks = strategies.class_balanced(labels, confidence, budget=6, names=["a", "b", "c"])
    kept = labels[[p.index for p in picks]]
    assert np.bincount(kept, minlength=3).tolist() == [2, 2, 1]  # cap 2; label c has only one text
    assert all("quota 2" in p.reason for p in picks)
    assert picks[0].index == 0  # most confident first


def test_balanced_follows_a_given_class_prior():
    labels = np.array([0] * 10 + [1] * 10)
    confidence = np.linspace(0.99, 0.5, len(labels))
    picks = strategies.class_balanced(labels, confidence, budget=10, names=["pos", "neg"], prior=[0.8, 0.2])
    assert np.bincount(labels[[p.index for p in picks]], minlength=2).tolist() == [8, 2]
    with pytest.raises(ValueError, match="one non-negative share per label"):
        strategies.class_balanced(labels, confidence, budget=10, names=["pos", "neg"], prior=[1.0])


def test_llkd_prefers_teacher_sure_and_student_unsure():
    teacher = np.array([[0.95, 0.05], [0.9, 0.1], [0.55, 0.45], [0.97, 0.03], [0.1, 0.9]])
    student = np.array([[0.5, 0.5],   # sure teacher, lost student: the best pick
                        [0.99, 0.01],  # student already knows it
                        [0.5, 0.5],    # teacher unsure: never picked
                        [0.6, 0.4],    # surest teacher, fairly unsure student: 0.97 x 0.97 = 0.94
                        [0.5, 0.5]])   # 0.9 x 1.0 = 0.9
    picks = strategies.llkd(teacher, student, budget=3, min_teacher_confidence=0.8)
    assert [p.index for p in picks] == [0, 3, 4]
    assert picks[0].reason.startswith("llkd: teacher 0.95 (threshold 0.80), student entropy 1.00")
    assert 2 not in [p.index for p in strategies.llkd(teacher, student, budget=5)]


def test_llkd_rejects_mismatched_shapes_and_budgets():
    with pytest.raises(ValueError, match="same texts"):
        strategies.llkd(np.ones((3, 2)) / 2, np.ones((2, 2)) / 2, budget=1)
    with pytest.raises(ValueError, match="budget"):
        strategies.most_confident(np.ones(3), budget=0)
