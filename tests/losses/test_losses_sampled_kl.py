"""k1/k2/k3 on the student's own samples: exact expectations by enumerating a small vocabulary."""

from __future__ import annotations

import math

import pytest
import torch

from protege.losses import kl_estimates, sampled_kl, token_divergence

VOCAB = 6


def setup(seed: int):
    g = torch.Generator().manual_seed(seed)
    student = (torch.randn(VOCAB, generator=g, dtype=torch.float64) * 1.5).requires_grad_()
    teacher = torch.randn(VOCAB, generator=g, dtype=torch.float64) * 1.5
    return student, teacher


def expectation_over_student_samples(student: torch.Tensor, teacher: torch.Tensor,
                                     estimator: str) -> torch.Tensor:
    """Σ_x q(x) k(x): the estimator's mean over x ~ q, with the sampling weights held fixed (as in training,
    where samples are drawn and then the estimator is differentiated through log q(x) only)."""
    log_q, log_p = torch.log_softmax(student, -1), torch.log_softmax(teacher, -1)
    return (log_q.exp().detach() * kl_estimates(log_q, log_p, estimator=estimator)).sum()


def exact(student: torch.Tensor, teacher: torch.Tensor, kind: str) -> torch.Tensor:
    return token_divergence(student[None], teacher[None], torch.ones(1, dtype=torch.bool), kind=kind)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_values_k1_and_k3_are_unbiased_for_reverse_kl_k2_is_not(seed: int) -> None:
    student, teacher = setup(seed)
    reverse = exact(student, teacher, "reverse_kl")
    for estimator in ("k1", "k3"):
        torch.testing.assert_close(expectation_over_student_samples(student, teacher, estimator), reverse,
                                   rtol=1e-12, atol=1e-14)
    k2 = expectation_over_student_samples(student, teacher, "k2")
    assert k2 > 0 and abs(k2 - reverse) > 1e-3


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gradients_k2_is_reverse_kl_k3_is_forward_kl_k1_is_zero(seed: int) -> None:
    student, teacher = setup(seed)

    def grad(value: torch.Tensor) -> torch.Tensor:
        return torch.autograd.grad(value, student)[0]

    reverse = grad(exact(student, teacher, "reverse_kl"))
    forward = grad(exact(student, teacher, "forward_kl"))
    torch.testing.assert_close(grad(expectation_over_student_samples(student, teacher, "k2")), reverse,
                               rtol=1e-10, atol=1e-13)
    torch.testing.assert_close(grad(expectation_over_student_samples(student, teacher, "k3")), forward,
                               rtol=1e-10, atol=1e-13)
    torch.testing.assert_close(grad(expectation_over_student_samples(student, teacher, "k1")),
                               torch.zeros(VOCAB, dtype=torch.float64), rtol=0, atol=1e-13)
    assert (reverse - forward).abs().max() > 1e-3  # the two targets really differ here


def test_monte_carlo_samples_agree_with_the_exact_reverse_kl() -> None:
    student, teacher = setup(3)
    log_q, log_p = torch.log_softmax(student, -1), torch.log_softmax(teacher, -1)
    draws = torch.multinomial(log_q.exp().detach(), 40_000, replacement=True,
                              generator=torch.Generator().manual_seed(1))
    mask = torch.ones(draws.shape, dtype=torch.bool)
    estimate = sampled_kl(log_q[draws], log_p[draws], mask, estimator="k3")
    values = kl_estimates(log_q[draws], log_p[draws], estimator="k3").detach()
    reverse = exact(student, teacher, "reverse_kl").detach()
    assert abs(estimate.item() - reverse.item()) < 5 * values.std().item() / math.sqrt(draws.numel())


def test_masking_and_reduction() -> None:
    g = torch.Generator().manual_seed(4)
    s = (torch.randn(3, 5, generator=g, dtype=torch.float64) - 2).requires_grad_()
    t = torch.randn(3, 5, generator=g, dtype=torch.float64) - 2
    mask = torch.rand(3, 5, generator=g) > 0.4
    mask[0, 0] = True
    t_garbage = t.masked_fill(~mask, math.nan)
    for estimator in ("k1", "k2", "k3"):
        s_garbage = s.masked_fill(~mask, -math.inf)
        value = sampled_kl(s_garbage, t_garbage, mask, estimator=estimator, num_tokens=10)
        expected = kl_estimates(s[mask], t[mask], estimator=estimator).sum() / 10
        torch.testing.assert_close(value, expected, rtol=1e-12, atol=0)
        (g_value,) = torch.autograd.grad(value, s)
        assert torch.isfinite(g_value).all() and torch.all(g_value[~mask] == 0)
    with pytest.raises(ValueError, match="estimator"):
        sampled_kl(s, t, mask, estimator="k4")
