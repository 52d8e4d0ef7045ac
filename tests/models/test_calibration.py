"""Calibration, ensembling and candidate sets, checked against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from protege.models import calibration as cal


def test_contextual_calibration_removes_a_known_prior_exactly():
    prior = np.log(np.array([[0.7, 0.2, 0.1]]))  # one template
    evidence = np.array([[[0.0, 1.0, 0.0]], [[2.0, 0.0, 0.0]]])  # two texts, log-space evidence
    scores = evidence + prior[None]
    content_free = np.stack([prior, prior + 3.0])  # two content-free inputs; the shift cancels on normalising
    fixed = cal.calibrate(scores, cal.contextual_prior(content_free))
    assert np.exp(fixed) == pytest.approx(np.exp(cal.log_normalise(evidence)))


def test_contextual_prior_averages_probabilities_not_log_probabilities():
    a, b = np.log([[0.9, 0.1]]), np.log([[0.1, 0.9]])
    assert np.exp(cal.contextual_prior(np.stack([a, b]))) == pytest.approx(np.array([[0.5, 0.5]]))


def test_mean_calibration_balances_a_teacher_that_always_says_the_same_label():
    rng = np.random.default_rng(0)
    evidence = rng.normal(size=(200, 1, 3))
    biased = evidence + np.array([5.0, 0.0, 0.0])  # label 0 wins almost everywhere
    assert (biased.argmax(-1) == 0).mean() > 0.9
    fixed = cal.calibrate(biased, cal.mean_prior(biased))
    assert (fixed.argmax(-1) == evidence.argmax(-1)).mean() > 0.9


def test_ensemble_is_the_renormalised_geometric_mean_of_template_distributions():
    p1, p2 = np.array([0.6, 0.4]), np.array([0.2, 0.8])
    logp = np.log(np.stack([p1, p2]))[None]  # one text, two templates
    want = np.sqrt(p1 * p2) / np.sqrt(p1 * p2).sum()
    assert np.exp(cal.ensemble(logp))[0] == pytest.approx(want)


def test_candidate_set_is_the_top_label_when_sure_else_the_smallest_covering_set():
    assert cal.candidate_set(np.array([0.1, 0.8, 0.1]), threshold=0.6, mass=0.9) == [1]
    assert cal.candidate_set(np.array([0.35, 0.4, 0.25]), threshold=0.6, mass=0.7) == [1, 0]
    assert cal.candidate_set(np.array([0.35, 0.4, 0.25]), threshold=0.6, mass=0.9) == [1, 0, 2]


def test_entropy_is_normalised_to_one_for_uniform():
    assert cal.entropy(np.array([[0.25] * 4, [1.0, 0, 0, 0]])) == pytest.approx([1.0, 0.0])
