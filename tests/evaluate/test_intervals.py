"""Wilson intervals and the paired bootstrap of a difference."""

from __future__ import annotations

import math

import numpy as np
import pytest

from protege.evaluate.intervals import bootstrap_metric, micro_f1, paired_bootstrap, wilson
from protege.evaluate.metrics import macro_f1


def test_wilson_matches_the_closed_form():
    # 7 of 10 at 95 %: centre (0.7 + z²/20) / (1 + z²/10), half-width z·sqrt(0.021 + z²/400) / (1 + z²/10)
    z = 1.959963984540054
    d = 1 + z * z / 10
    centre, half = (0.7 + z * z / 20) / d, z * math.sqrt(0.7 * 0.3 / 10 + z * z / 400) / d
    assert wilson(7, 10) == pytest.approx((centre - half, centre + half), abs=1e-12)
    assert wilson(7, 10) == pytest.approx((0.3968, 0.8922), abs=1e-4)  # the textbook value


def test_wilson_edges():
    low, high = wilson(0, 3)
    assert low == 0.0 and 0.4 < high < 0.8  # not the Wald interval's (0, 0)
    assert wilson(3, 3)[1] == 1.0 and wilson(3, 3)[0] > 0.3
    assert wilson(0, 0) == (0.0, 1.0)
    narrow, wide = wilson(50, 100, 0.8), wilson(50, 100, 0.99)
    assert wide[0] < narrow[0] < 0.5 < narrow[1] < wide[1]
    with pytest.raises(ValueError, match="need 0 <= successes <= n"):
        wilson(4, 3)
    with pytest.raises(ValueError, match="confidence=1.5"):
        wilson(1, 3, 1.5)


def test_paired_bootstrap_of_a_constant_shift_is_exact():
    a = np.array([0.0, 1.0, 1.0, 0.0, 1.0])
    d = paired_bootstrap(a + 1, a, resamples=200)
    assert (d.estimate, d.low, d.high) == (1.0, 1.0, 1.0) and not d.inside_noise
    same = paired_bootstrap(a, a, resamples=200)
    assert (same.low, same.high) == (0.0, 0.0) and same.inside_noise


def test_paired_bootstrap_agrees_with_normal_theory_and_pairing_cancels_shared_variation():
    rng = np.random.default_rng(1)
    item = rng.normal(0, 5, size=400)  # large shared per-item difficulty
    a, b = item + rng.normal(0.3, 1, 400), item + rng.normal(0, 1, 400)
    d = paired_bootstrap(a, b, resamples=4000, seed=2)
    diff = a - b
    half = 1.959964 * diff.std(ddof=1) / math.sqrt(diff.size)
    assert d.estimate == pytest.approx(diff.mean())
    assert d.low == pytest.approx(diff.mean() - half, abs=0.03) and d.high == pytest.approx(diff.mean() + half,
                                                                                              abs=0.03)
    assert d.high - d.low < 0.4  # unpaired, the shared variance (sd 5) would make it ~1.4 wide
    assert not d.inside_noise and d.items == 400
    assert paired_bootstrap(a, b, resamples=500, seed=3) == paired_bootstrap(a, b, resamples=500, seed=3)


def test_paired_bootstrap_rejects_unpaired_input():
    with pytest.raises(ValueError, match="same items"):
        paired_bootstrap([1, 0], [1, 0, 1])
    with pytest.raises(ValueError, match="at least one"):
        paired_bootstrap([], [])


def test_wilson_bounds_are_exact_at_zero_and_all_and_narrow_with_n():
    assert wilson(0, 10)[0] == 0.0 and wilson(10, 10)[1] == 1.0
    small, large = wilson(9, 10), wilson(900, 1000)
    assert (small[1] - small[0]) > 5 * (large[1] - large[0])


def test_identical_systems_have_a_zero_width_interval_and_pairing_matters():
    a = np.random.default_rng(0).integers(0, 2, 200).astype(float)
    same = paired_bootstrap(a, a)
    assert (same.estimate, same.low, same.high) == (0.0, 0.0, 0.0)
    # b = a with one more correct answer: paired, the difference is tiny and certain; unpaired it would not be
    b = a.copy()
    b[np.flatnonzero(a == 0)[0]] = 1
    d = paired_bootstrap(b, a)
    assert d.estimate == pytest.approx(1 / 200) and d.low >= 0 and d.high <= 0.02


def test_paired_bootstrap_covers_the_true_difference_about_95_percent_of_the_time():
    rng = np.random.default_rng(3)
    hits = 0
    for trial in range(200):
        a = (rng.random(150) < 0.7).astype(float)
        b = (rng.random(150) < 0.6).astype(float)
        d = paired_bootstrap(a, b, resamples=500, seed=trial)
        hits += d.low <= 0.1 <= d.high
    assert 0.88 <= hits / 200 <= 0.99


def test_bootstrap_metric_brackets_macro_f1_and_narrows_with_more_items():
    rng = np.random.default_rng(0)

    def width(n: int) -> tuple[float, float, float]:
        gold = rng.integers(0, 3, n)
        pred = np.where(rng.random(n) < 0.7, gold, rng.integers(0, 3, n))
        low, high = bootstrap_metric(lambda rows: macro_f1(gold[rows], pred[rows], 3), n, resamples=400)
        return low, macro_f1(gold, pred, 3), high

    small, large = width(60), width(2000)
    assert small[0] < small[1] < small[2] and large[0] < large[1] < large[2]
    assert large[2] - large[0] < (small[2] - small[0]) / 3
    assert bootstrap_metric(lambda rows: 1.0, 5, resamples=10) == (1.0, 1.0)
    with pytest.raises(ValueError, match="at least one"):
        bootstrap_metric(lambda rows: 0.0, 0)


def test_micro_f1_of_counts_is_the_pooled_f1_and_averages_runs():
    # Two runs over three items: (matched, predicted, gold) per item.
    a = np.array([[1, 0, 2], [2, 1, 2], [1, 1, 3]], float)
    b = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 3]], float)
    whole = np.arange(3)[None, :]
    f1_a = 2 * 3 / (5 + 5)  # pooled over items, not the mean of per-item F1s
    assert micro_f1([a], whole)[0] == pytest.approx(f1_a)
    assert micro_f1([a, b], whole)[0] == pytest.approx((f1_a + 0.0) / 2)
    # Resampled rows: item 2 drawn twice counts twice; an empty draw (no predicted, no gold) scores 0.
    assert micro_f1([a], np.array([[2, 2, 0]]))[0] == pytest.approx(2 * 5 / (6 + 7))
    assert micro_f1([np.zeros((3, 2))], np.array([[0, 1], [1, 1]])).tolist() == [0.0, 0.0]
