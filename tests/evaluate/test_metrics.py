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
