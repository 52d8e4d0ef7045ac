"""Reasoning metrics: pass@k against enumeration, maj@n voting and ties, buckets, token and rate summaries."""

from __future__ import annotations

import itertools
import math

import pytest

from protege.tasks.reasoning.metrics import (
    accuracy,
    accuracy_by_bucket,
    maj_at_n,
    majority_answer,
    pass_at_k,
    problem_summary,
    response_summary,
)


@pytest.mark.parametrize("n, c", [(1, 0), (1, 1), (4, 1), (5, 2), (6, 3), (7, 0), (7, 7), (8, 5)])
def test_pass_at_k_equals_the_share_of_k_subsets_with_a_correct_sample(n, c):
    samples = [1] * c + [0] * (n - c)
    for k in range(1, n + 1):
        subsets = list(itertools.combinations(range(n), k))
        brute = sum(any(samples[i] for i in s) for s in subsets) / len(subsets)
        assert pass_at_k(n, c, k) == pytest.approx(brute, abs=1e-12)


def test_pass_at_k_is_stable_where_the_binomials_are_huge():
    n, c, k = 2000, 3, 100
    assert pass_at_k(n, c, k) == pytest.approx(1 - math.comb(n - c, k) / math.comb(n, k), rel=1e-9)
    assert pass_at_k(n, 1, 1) == pytest.approx(1 / n)
    with pytest.raises(ValueError, match="1 <= k <= n"):
        pass_at_k(3, 1, 4)


def test_majority_votes_by_equivalence_and_breaks_ties_by_first_seen():
    assert majority_answer(["7", "1,000", None, "1000.0", "7", "1000"]) == "1,000"
    assert majority_answer(["5", "6", "6", "5"]) == "5"  # tie: the group seen first
    assert majority_answer(["6", "5", "5", "6"]) == "6"
    assert majority_answer([None, None]) is None
    assert maj_at_n(["5", "6", "6"], "6") and not maj_at_n(["5", "5", "6"], "6")
    assert maj_at_n(["Paris", "paris", "Rome"], "PARIS", "exact")
    assert not maj_at_n([None], "1")


def test_buckets_and_summaries():
    buckets = accuracy_by_bucket([True, False, True, True], [(2, 1), (3, 2), (3, 2), (2, 1)])
    assert buckets == {(2, 1): {"accuracy": 1.0, "n": 2.0}, (3, 2): {"accuracy": 0.5, "n": 2.0}}
    records = [
        {"correct": True, "formatted": True, "truncated": False, "tokens": 20},
        {"correct": False, "formatted": False, "truncated": True, "tokens": 60},
        {"correct": False, "formatted": True, "truncated": False, "tokens": 40},
        {"correct": True, "formatted": True, "truncated": False, "tokens": 30},
    ]
    s = response_summary(records)
    assert s["accuracy"] == 0.5 and s["format_rate"] == 0.75 and s["truncation_rate"] == 0.25
    assert (s["tokens_correct"], s["tokens_wrong"]) == (25.0, 50.0)
    assert s["correct_per_1k_tokens"] == pytest.approx(1000 * 2 / 150)
    assert accuracy([]) != accuracy([])  # NaN for no data, not a fake 0


def test_problem_summary_averages_pass_at_k_and_maj_over_problems():
    p1 = [{"correct": True, "answer": "3"}, {"correct": False, "answer": "4"}, {"correct": False, "answer": "4"}]
    p2 = [{"correct": True, "answer": "9"}, {"correct": True, "answer": "9.0"}, {"correct": False, "answer": None}]
    out = problem_summary([p1, p2], ["3", "9"], ks=(1, 2))
    assert out["pass@1"] == pytest.approx((1 / 3 + 2 / 3) / 2)
    assert out["pass@2"] == pytest.approx(((1 - 1 / 3) + 1.0) / 2)
    assert out["maj@n"] == 0.5
