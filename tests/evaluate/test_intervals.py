"""Wilson intervals against hand-computed values, and the paired bootstrap's coverage and pairing."""

from __future__ import annotations

import math

import numpy as np
import pytest

from protege.evaluate.intervals import paired_bootstrap, wilson


def test_wilson_matches_the_formula_computed_by_hand():
    # 8 of 10, z = 1.959964: centre (0.8 + z^2/20) / (1 + z^2/10), half z sqrt(0.016 + z^2/400) / (1 + z^2/10)
    z = 1.959963984540054
    denom = 1 + z * z / 10
    centre = (0.8 + z * z / 20) / denom
    half = z * math.sqrt(0.8 * 0.2 / 10 + z * z / 400) / denom
    lo, hi = wilson(8, 10)
    assert lo == pytest.approx(centre - half, abs=1e-12) and hi == pytest.approx(centre + half, abs=1e-12)
    assert (round(lo, 4), round(hi, 4)) == (0.4902, 0.9433)  # the textbook value for 8/10


def test_wilson_stays_in_the_unit_interval_and_narrows_with_n():
    assert wilson(0, 10)[0] == 0.0 and wilson(10, 10)[1] == 1.0
    assert wilson(0, 0) == (0.0, 1.0)
    small, large = wilson(9, 10), wilson(900, 1000)
    assert (small[1] - small[0]) > 5 * (large[1] - large[0])
    with pytest.raises(ValueError):
        wilson(11, 10)


def test_paired_bootstrap_is_the_mean_difference_with_an_interval_around_it():
    a = np.array([1, 1, 1, 0, 1, 1, 0, 1, 1, 1] * 10, dtype=float)
    b = np.array([1, 0, 1, 0, 1, 0, 0, 1, 1, 0] * 10, dtype=float)
    diff, (lo, hi) = paired_bootstrap(a, b, seed=1)
    assert diff == pytest.approx(0.3)
    assert lo < 0.3 < hi and lo > 0.15 and hi < 0.45
    assert paired_bootstrap(a, b, seed=1) == paired_bootstrap(a, b, seed=1)


def test_identical_models_have_a_zero_width_interval_and_pairing_matters():
    a = np.random.default_rng(0).integers(0, 2, 200).astype(float)
    assert paired_bootstrap(a, a) == (0.0, (0.0, 0.0))
    # b = a shifted by one correct answer: paired, the difference is tiny and certain; unpaired it would not be
    b = a.copy()
    b[np.flatnonzero(a == 0)[0]] = 1
    diff, (lo, hi) = paired_bootstrap(b, a)
    assert diff == pytest.approx(1 / 200) and lo >= 0 and hi <= 0.02


def test_paired_bootstrap_covers_the_true_difference_about_95_percent_of_the_time():
    rng = np.random.default_rng(3)
    hits = 0
    for trial in range(200):
        a = (rng.random(150) < 0.7).astype(float)
        b = (rng.random(150) < 0.6).astype(float)
        _, (lo, hi) = paired_bootstrap(a, b, resamples=500, seed=trial)
        hits += lo <= 0.1 <= hi
    assert 0.88 <= hits / 200 <= 0.99
