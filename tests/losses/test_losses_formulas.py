"""Divergence formulas against independent float64 references, hand-computed cases and their properties."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from protege.losses import KINDS, DivergenceSpec, token_divergence

# Independent numpy references, written from the formulas (p = teacher, q = student, rows = positions).


def ref_kl(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    return np.sum(np.where(p > 0, p * (np.log(np.where(p > 0, p, 1)) - np.log(q)), 0.0), axis=-1)


def ref(kind: str, p: np.ndarray, q: np.ndarray, beta: float = 0.5, alpha: float = 0.1) -> np.ndarray:
    if kind == "forward_kl":
        return ref_kl(p, q)
    if kind == "reverse_kl":
        return ref_kl(q, p)
    if kind == "jsd":
        m = beta * p + (1 - beta) * q
        return beta * ref_kl(p, m) + (1 - beta) * ref_kl(q, m)
    if kind == "tvd":
        return 0.5 * np.abs(p - q).sum(-1)
    if kind == "skew_forward_kl":  # DistiLLM eq.: KL(p || alpha p + (1 - alpha) q)
        return ref_kl(p, alpha * p + (1 - alpha) * q)
    if kind == "skew_reverse_kl":  # DistiLLM eq.: KL(q || (1 - alpha) p + alpha q)
        return ref_kl(q, (1 - alpha) * p + alpha * q)
    raise AssertionError(kind)


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def loss(student: np.ndarray, teacher: np.ndarray, kind: str, **kw) -> float:
    s = torch.tensor(student, dtype=torch.float64)
    t = torch.tensor(teacher, dtype=torch.float64)
    return float(token_divergence(s, t, torch.ones(s.shape[:-1], dtype=torch.bool), kind=kind, **kw))


# Teacher p = (1/2, 1/2), student q = (1/4, 3/4), as logits (an offset must not matter).
P_LOGITS = np.log([[0.5, 0.5]]) + 3.0
Q_LOGITS = np.log([[0.25, 0.75]]) - 1.0
HAND = {
    "forward_kl": 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75),
    "reverse_kl": 0.25 * math.log(0.25 / 0.5) + 0.75 * math.log(0.75 / 0.5),
    # m = (3/8, 5/8)
    "jsd": 0.5 * (0.5 * math.log(0.5 / 0.375) + 0.5 * math.log(0.5 / 0.625))
    + 0.5 * (0.25 * math.log(0.25 / 0.375) + 0.75 * math.log(0.75 / 0.625)),
    "tvd": 0.25,
    # alpha = 0.1: mixture 0.1 p + 0.9 q = (0.275, 0.725)
    "skew_forward_kl": 0.5 * math.log(0.5 / 0.275) + 0.5 * math.log(0.5 / 0.725),
    # alpha = 0.1: mixture 0.9 p + 0.1 q = (0.475, 0.525)
    "skew_reverse_kl": 0.25 * math.log(0.25 / 0.475) + 0.75 * math.log(0.75 / 0.525),
}


@pytest.mark.parametrize("kind", KINDS)
def test_hand_computed_two_token_case(kind: str) -> None:
    assert loss(Q_LOGITS, P_LOGITS, kind) == pytest.approx(HAND[kind], rel=1e-12)


@pytest.mark.parametrize("kind", KINDS)
def test_temperature_divides_both_logits(kind: str) -> None:
    assert loss(2.5 * Q_LOGITS, 2.5 * P_LOGITS, kind, temperature=2.5) == pytest.approx(HAND[kind], rel=1e-12)


def test_forward_and_reverse_are_not_swapped() -> None:
    # A teacher with a mode the student misses: forward KL (mass-covering) punishes it much harder.
    teacher = np.log([[0.49, 0.49, 0.02]])
    student = np.log([[0.98, 0.01, 0.01]])
    p, q = softmax(teacher), softmax(student)
    assert loss(student, teacher, "forward_kl") == pytest.approx(float(ref_kl(p, q)[0]), rel=1e-12)
    assert loss(student, teacher, "reverse_kl") == pytest.approx(float(ref_kl(q, p)[0]), rel=1e-12)
    assert loss(student, teacher, "forward_kl") > 2 * loss(student, teacher, "reverse_kl")


logit_rows = hnp.arrays(np.float64, st.tuples(st.integers(1, 3), st.integers(2, 6)),
                        elements=st.floats(-6, 6, allow_nan=False))


@st.composite
def logit_pairs(draw):
    s = draw(logit_rows)
    t = draw(hnp.arrays(np.float64, s.shape, elements=st.floats(-6, 6, allow_nan=False)))
    return s, t


@settings(max_examples=40, deadline=None)
@given(logit_pairs(), st.sampled_from(KINDS), st.floats(0, 1), st.floats(0, 0.95), st.floats(0.5, 3))
def test_matches_reference_and_is_non_negative(pair, kind, beta, alpha, temperature) -> None:
    s, t = pair
    p, q = softmax(t / temperature), softmax(s / temperature)
    expected = ref(kind, p, q, beta=beta, alpha=alpha)
    if kind == "jsd" and beta in (0.0, 1.0):
        expected = ref("forward_kl" if beta == 0 else "reverse_kl", p, q)
    got = loss(s, t, kind, beta=beta, alpha=alpha, temperature=temperature)
    assert got == pytest.approx(float(expected.mean()), rel=1e-9, abs=1e-12)
    assert got >= -1e-12


@settings(max_examples=40, deadline=None)
@given(logit_pairs(), st.sampled_from(KINDS), st.floats(-5, 5))
def test_zero_iff_equal(pair, kind, shift) -> None:
    s, t = pair
    assert loss(s, s + shift, kind) == pytest.approx(0.0, abs=1e-12)  # equal distributions, shifted logits
    gap = np.abs(softmax(s) - softmax(t)).max()
    if gap > 1e-2:
        assert loss(s, t, kind) > 1e-8


@settings(max_examples=30, deadline=None)
@given(logit_pairs())
def test_jsd_half_is_symmetric(pair) -> None:
    s, t = pair
    assert loss(s, t, "jsd", beta=0.5) == pytest.approx(loss(t, s, "jsd", beta=0.5), rel=1e-10, abs=1e-14)


@settings(max_examples=15, deadline=None)
@given(logit_pairs())
def test_beta_endpoints_are_the_scaled_limits_not_zero(pair) -> None:
    s, t = pair
    forward, reverse = loss(s, t, "forward_kl"), loss(s, t, "reverse_kl")
    assert loss(s, t, "jsd", beta=0.0) == forward
    assert loss(s, t, "jsd", beta=1.0) == reverse
    eps = 1e-8
    assert loss(s, t, "jsd", beta=eps) / eps == pytest.approx(forward, rel=1e-3, abs=1e-9)
    assert loss(s, t, "jsd", beta=1 - eps) / eps == pytest.approx(reverse, rel=1e-3, abs=1e-9)


@settings(max_examples=12, deadline=None)
@given(logit_pairs())
def test_alpha_endpoints(pair) -> None:
    s, t = pair
    assert loss(s, t, "skew_forward_kl", alpha=0.0) == loss(s, t, "forward_kl")
    assert loss(s, t, "skew_reverse_kl", alpha=0.0) == loss(s, t, "reverse_kl")
    # Continuous at 0, and the skew shrinks the divergence monotonically towards alpha -> 1.
    for kind, plain in (("skew_forward_kl", "forward_kl"), ("skew_reverse_kl", "reverse_kl")):
        assert loss(s, t, kind, alpha=1e-10) == pytest.approx(loss(s, t, plain), rel=1e-5, abs=1e-12)
        values = [loss(s, t, kind, alpha=a) for a in (0.0, 0.5, 0.999)]
        assert all(a >= b - 1e-12 for a, b in zip(values, values[1:]))


def test_alpha_one_and_bad_arguments_explain_themselves() -> None:
    with pytest.raises(ValueError, match="alpha=1"):
        DivergenceSpec(kind="skew_forward_kl", alpha=1.0)
    with pytest.raises(ValueError, match="kind"):
        DivergenceSpec(kind="kl")
    with pytest.raises(ValueError, match="temperature"):
        DivergenceSpec(kind="jsd", temperature=0)
    with pytest.raises(ValueError, match="beta"):
        DivergenceSpec(kind="jsd", beta=1.5)


@settings(max_examples=30, deadline=None)
@given(logit_pairs(), st.sampled_from(KINDS), st.floats(0.5, 3))
def test_gradient_points_toward_the_teacher(pair, kind, temperature) -> None:
    """A small step against the gradient lowers the divergence; for forward KL it also moves q toward p.

    ⟨Δq, p − q⟩ > 0 is a theorem only for forward KL, whose logit gradient is (q − p)/T, so that
    ⟨Δq, p − q⟩ ≈ η (p − q)ᵀ (diag(q) − q qᵀ) (p − q) > 0. Other divergences descend along other metrics and
    can move some probabilities away from p (hypothesis found such a case for reverse KL)."""
    s_np, t_np = pair
    p, q = softmax(t_np / temperature), softmax(s_np / temperature)
    if np.abs(p - q).max() < 1e-2:
        return
    if kind == "tvd" and np.abs(p - q).min() < 1e-3:
        return  # TVD has a kink wherever p_i = q_i: there a subgradient step need not descend
    s = torch.tensor(s_np, requires_grad=True)
    t = torch.tensor(t_np)
    mask = torch.ones(s.shape[:-1], dtype=torch.bool)
    value = token_divergence(s, t, mask, kind=kind, temperature=temperature)
    (grad,) = torch.autograd.grad(value, s)
    step = 1e-4 / max(float(grad.abs().max()), 1e-12)
    moved = (s - step * grad).detach()
    assert float(token_divergence(moved, t, mask, kind=kind, temperature=temperature)) < value.item()
    if kind == "forward_kl":
        dq = softmax(moved.numpy() / temperature) - q
        assert float(np.sum(dq * (p - q))) > 0


def test_forward_kl_gradient_is_q_minus_p_over_t() -> None:
    torch.manual_seed(0)
    s = torch.randn(3, 4, 7, dtype=torch.float64, requires_grad=True)
    t = torch.randn(3, 4, 7, dtype=torch.float64)
    mask = torch.rand(3, 4) > 0.4
    T = 1.7
    value = token_divergence(s, t, mask, kind="forward_kl", temperature=T)
    (grad,) = torch.autograd.grad(value, s)
    expected = (torch.softmax(s / T, -1) - torch.softmax(t / T, -1)) / T / mask.sum() * mask.unsqueeze(-1)
    torch.testing.assert_close(grad, expected.detach(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kind", ["skew_forward_kl", "skew_reverse_kl"])
def test_skew_kls_match_distillm_paper_and_its_conventions(kind: str) -> None:
    """DistiLLM (Ko et al., 2024, eqs. for SKL/SRKL) with p the teacher and q_θ the student.

    Its released code reports −Σ p log(mixture) for the skew *forward* KL, i.e. our value plus the teacher
    entropy H(p) (same gradient), uses no temperature and averages over the local micro-batch's tokens.
    """
    rng = np.random.default_rng(1)
    s, t = rng.normal(size=(5, 9)) * 2, rng.normal(size=(5, 9)) * 2
    p, q = softmax(t), softmax(s)
    for alpha in (0.1, 0.5):
        ours = loss(s, t, kind, alpha=alpha)
        assert ours == pytest.approx(float(ref(kind, p, q, alpha=alpha).mean()), rel=1e-12)
        if kind == "skew_forward_kl":
            cross_entropy = float(-(p * np.log(alpha * p + (1 - alpha) * q)).sum(-1).mean())
            entropy = float(-(p * np.log(p)).sum(-1).mean())
            assert cross_entropy == pytest.approx(ours + entropy, rel=1e-12)
