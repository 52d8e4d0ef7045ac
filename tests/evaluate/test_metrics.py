import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

from protege.evaluate import metrics

labels = st.integers(min_value=2, max_value=5).flatmap(
    lambda c: st.tuples(
        st.just(c),
        st.lists(st.tuples(st.integers(0, c - 1), st.integers(0, c - 1)), min_size=1, max_size=60),
    )
)


@settings(max_examples=60, deadline=None)
@given(labels)
def test_metrics_match_sklearn(case):
    c, pairs = case
    t, p = np.array(pairs).T
    assert metrics.accuracy(t, p) == pytest.approx(accuracy_score(t, p))
    assert metrics.macro_f1(t, p, c) == pytest.approx(f1_score(t, p, average="macro", zero_division=0))
    np.testing.assert_array_equal(metrics.confusion(t, p, c), confusion_matrix(t, p, labels=list(range(c))))


def test_ece_hand_case():
    # Two bins. Bin (0, .5]: confidences .4, .5 (argmax correct once) -> acc .5, conf .45, gap .05.
    # Bin (.5, 1]: confidences .9, .9, .6 with 2 of 3 correct -> acc 2/3, conf .8, gap 2/15.
    probs = [[0.4, 0.3, 0.3], [0.5, 0.5, 0.0], [0.9, 0.1, 0.0], [0.1, 0.9, 0.0], [0.2, 0.2, 0.6]]
    truth = [0, 1, 0, 1, 0]
    rel = metrics.reliability(probs, truth, bins=2)
    assert rel.count.tolist() == [2, 3]
    assert rel.accuracy.tolist() == pytest.approx([0.5, 2 / 3])
    assert rel.confidence.tolist() == pytest.approx([0.45, 0.8])
    assert rel.ece == pytest.approx((2 * 0.05 + 3 * (0.8 - 2 / 3)) / 5)


def test_perfectly_calibrated_and_overconfident():
    truth = [0, 0, 0, 1]
    assert metrics.expected_calibration_error([[0.75, 0.25]] * 4, truth, bins=10) == pytest.approx(0.0)
    assert metrics.expected_calibration_error([[1.0, 0.0]] * 4, truth, bins=10) == pytest.approx(0.25)


def test_one_class_share_and_majority():
    assert metrics.largest_class_share([2, 2, 2, 1]) == 0.75
    assert metrics.majority_class([0, 1, 1, 2], 3) == 1
    with pytest.raises(ValueError, match="0..1"):
        metrics.confusion([0, 2], [0, 1], 2)


def test_temperature_scaling_keeps_predictions_and_fixes_an_under_confident_model():
    from protege.evaluate.metrics import apply_temperature, expected_calibration_error, fit_temperature

    rng = np.random.default_rng(0)
    n, k = 600, 3
    gold = rng.integers(0, k, n)
    # a model right 90 % of the time that says so with only ~50 % confidence: logits scaled down by 4
    sharp = np.full((n, k), -2.0)
    pred = np.where(rng.random(n) < 0.9, gold, (gold + 1) % k)
    sharp[np.arange(n), pred] = 2.0
    timid = np.exp(sharp / 4) / np.exp(sharp / 4).sum(1, keepdims=True)
    t = fit_temperature(timid[:300], gold[:300])
    assert 0.15 < t < 0.4  # close to the 1/4 that undoes the softening (a bit above: 10 % are wrong)
    after = apply_temperature(timid, t)
    assert (after.argmax(1) == timid.argmax(1)).all()
    assert expected_calibration_error(after[300:], gold[300:]) < expected_calibration_error(timid[300:], gold[300:]) / 3
    # by hand: T = 2 on [0.8, 0.2] gives sqrt ratios 2:1 -> [2/3, 1/3]
    assert apply_temperature(np.array([[0.8, 0.2]]), 2.0) == pytest.approx(np.array([[2 / 3, 1 / 3]]))
