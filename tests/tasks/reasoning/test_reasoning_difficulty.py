"""Per-problem difficulty: pass rate and interval, HS-STaR labels, DAST levels, and the noise k implies."""

from __future__ import annotations

import itertools
import random

import pytest
from pydantic import ValidationError

from protege.evaluate.intervals import wilson
from protege.tasks.reasoning.difficulty import (
    LabelConfig,
    dast_level,
    estimate,
    hs_star_label,
    label_noise,
    problem_stats,
)

CFG = LabelConfig(tau_h=0.7, tau_l=0.3, dast_easy=0.75, dast_medium=0.25)


@pytest.mark.parametrize("correct, k, process, label", [
    (3, 3, 1.0, "easy"),
    (3, 3, 0.5, "boundary"),  # all correct, but the steps are shaky
    (3, 3, 0.7, "boundary"),  # strictly above tau_h
    (3, 3, None, "easy"),  # no process score: by correctness alone
    (0, 3, 0.0, "too_hard"),
    (0, 3, 0.6, "boundary"),  # all wrong, but the steps look sound
    (0, 3, 0.3, "boundary"),  # strictly below tau_l
    (0, 3, None, "too_hard"),
    (1, 3, 1.0, "boundary"),
    (2, 3, None, "boundary"),
])
def test_hs_star_labels(correct, k, process, label):
    assert hs_star_label(correct, k, process, CFG.tau_h, CFG.tau_l) == label


@pytest.mark.parametrize("rate, level", [(1.0, "easy"), (0.75, "easy"), (0.74, "medium"), (0.25, "medium"),
                                         (0.2, "hard"), (0.01, "hard"), (0.0, "unsolved")])
def test_dast_levels(rate, level):
    assert dast_level(rate, CFG.dast_easy, CFG.dast_medium) == level


def test_estimate_groups_samples_per_problem():
    samples = [
        {"problem_id": "b", "correct": True, "process_score": 1.0, "tokens": 10},
        {"problem_id": "a", "correct": False, "process_score": None, "tokens": 30},
        {"problem_id": "b", "correct": True, "process_score": 0.0, "tokens": 20},
        {"problem_id": "a", "correct": False, "process_score": None, "tokens": 50},
        {"problem_id": "b", "correct": False, "process_score": 1.0, "tokens": 30},
    ]
    b, a = estimate(samples, CFG)
    assert (b.problem_id, b.k, b.correct, b.process, b.tokens) == ("b", 3, 2, pytest.approx(2 / 3), 20.0)
    assert (b.low, b.high) == wilson(2, 3) and b.hs_label == "boundary" and b.dast_level == "medium"
    assert (a.problem_id, a.pass_rate, a.process, a.tokens, a.hs_label, a.dast_level) == \
        ("a", 0.0, None, 40.0, "too_hard", "unsolved")


def test_label_noise_matches_the_issue_example_and_enumeration():
    noise = label_noise(0.7, 3)
    assert noise["easy"] == pytest.approx(0.343) and abs(noise["easy"] - 1 / 3) < 0.02  # "about a third"
    assert noise["too_hard"] == pytest.approx(0.027)
    p, k = 0.4, 4  # brute force over all 2^k outcomes
    weight = lambda outcome: p ** sum(outcome) * (1 - p) ** (k - sum(outcome))  # noqa: E731
    outcomes = list(itertools.product([0, 1], repeat=k))
    assert label_noise(p, k)["easy"] == pytest.approx(sum(weight(o) for o in outcomes if all(o)))
    assert label_noise(p, k)["boundary"] == pytest.approx(sum(weight(o) for o in outcomes if 0 < sum(o) < k))


def test_label_noise_by_simulation():
    rng = random.Random(0)
    hits = [sum(rng.random() < 0.7 for _ in range(3)) for _ in range(20_000)]
    stats = estimate([{"problem_id": str(i), "correct": j < h, "tokens": 1} for i, h in enumerate(hits)
                      for j in range(3)], CFG)
    share = sum(s.hs_label == "easy" for s in stats) / len(stats)
    assert share == pytest.approx(0.343, abs=0.015)


def test_bad_thresholds_and_samples_are_errors():
    with pytest.raises(ValidationError, match="tau_l=0.8 exceeds tau_h=0.5"):
        LabelConfig(tau_h=0.5, tau_l=0.8)
    with pytest.raises(ValidationError, match="dast_medium=0.9 exceeds dast_easy"):
        LabelConfig(dast_medium=0.9)
    with pytest.raises(ValueError, match="problem x has no samples"):
        problem_stats("x", [], [], [], CFG)
    with pytest.raises(ValueError, match="give one of each per sample"):
        problem_stats("x", [True], [], [3], CFG)
    assert estimate([], CFG) == []
