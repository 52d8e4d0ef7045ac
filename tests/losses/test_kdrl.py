"""KDRL's estimators against the exact gradients (Monte Carlo over the student's own samples), its schedules and gates.

The parity set-up: a categorical student q = softmax(θ) over 8 words, a fixed teacher p, 20,000 tokens drawn from
q. Each estimator's surrogate is averaged over the draws and differentiated in θ; the result is compared (cosine)
with the exact gradients of KL(q‖p) (reverse) and KL(p‖q) (forward), written out by hand.
"""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from protege.losses.kdrl import (
    KDRLConfig,
    exact_kd_terms,
    kdrl_token_loss,
    never_opens,
    sampled_kd_terms,
    teacher_rows,
)
from protege.losses.sampled import kl_estimates

D = torch.float64
V, DRAWS = 8, 20_000


def _setup(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    theta = torch.randn(V, generator=gen, dtype=D)
    teacher = torch.randn(V, generator=gen, dtype=D) * 1.5
    draws = torch.multinomial(theta.softmax(-1), DRAWS, replacement=True, generator=gen)
    return theta, teacher, draws


def _exact_gradients(theta: torch.Tensor, teacher: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    t = theta.detach().clone().requires_grad_()
    log_q, log_p = t.log_softmax(-1), teacher.log_softmax(-1)
    reverse = (log_q.exp() * (log_q - log_p)).sum()
    forward = (log_p.exp() * (log_p - log_q)).sum()
    return torch.autograd.grad(reverse, t, retain_graph=True)[0], torch.autograd.grad(forward, t)[0]


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(a, b, dim=0))


def _mc_gradient(estimator: str, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    theta, teacher, draws = _setup(seed)
    t = theta.clone().requires_grad_()
    logp = t.log_softmax(-1)[draws]
    teacher_logp = teacher.log_softmax(-1)[draws]
    if estimator == "exact":
        rows = t.expand(DRAWS, V)
        kd = exact_kd_terms(rows, teacher.expand(DRAWS, V))
    else:
        kd = sampled_kd_terms(estimator, logp, teacher_logp)
    # The KD part of KDRL alone: zero reward advantage, rollouts used once (old = current), β = 1, gate open.
    loss = kdrl_token_loss(logp, logp.detach(), torch.zeros(DRAWS, dtype=D), kd, beta=1.0, kd_open=1.0,
                           pg_weight=1.0).total.mean()
    (grad,) = torch.autograd.grad(loss, t)
    reverse, forward = _exact_gradients(theta, teacher)
    return grad, reverse, forward


def test_the_set_up_separates_the_two_directions():
    theta, teacher, _ = _setup()
    reverse, forward = _exact_gradients(theta, teacher)
    assert _cos(reverse, forward) < 0.9  # otherwise "matches reverse, not forward" would prove nothing


@pytest.mark.parametrize("estimator", ["k2", "k1_reward", "exact"])
def test_estimators_follow_the_reverse_kl_gradient(estimator):
    grad, reverse, forward = _mc_gradient(estimator)
    assert _cos(grad, reverse) >= 0.99
    assert _cos(grad, forward) < 0.95


def test_exact_has_no_estimator_variance():
    grad, reverse, _ = _mc_gradient("exact")
    assert torch.allclose(grad, reverse, atol=1e-12)


def test_k3_as_a_loss_follows_the_forward_kl_gradient_not_the_reverse_one():
    grad, reverse, forward = _mc_gradient("k3")
    assert _cos(grad, forward) >= 0.99
    assert _cos(grad, reverse) < 0.95


def test_k1_as_a_loss_is_refused_because_its_gradient_vanishes():
    theta, teacher, draws = _setup()
    with pytest.raises(ValueError, match="trains on noise"):
        sampled_kd_terms("k1", theta[draws], teacher[draws])
    with pytest.raises(ValidationError, match="k1"):
        KDRLConfig(estimator="k1")
    # Why: the k1 value averaged over the student's own draws has (almost) no gradient at all.
    t = theta.clone().requires_grad_()
    k1 = kl_estimates(t.log_softmax(-1)[draws], teacher.log_softmax(-1)[draws], estimator="k1").mean()
    (grad,) = torch.autograd.grad(k1, t)
    reverse, _ = _exact_gradients(theta, teacher)
    assert grad.norm() < 0.05 * reverse.norm()


@pytest.mark.parametrize("estimator", ["k2", "k1_reward", "k3", "exact"])
@pytest.mark.parametrize("beta", [1e-3, 0.5])
def test_every_non_zero_kd_weight_gives_a_non_zero_gradient(estimator, beta):
    theta, teacher, draws = _setup(3)
    draws = draws[:64]
    t = theta.clone().requires_grad_()
    logp = t.log_softmax(-1)[draws]
    if estimator == "exact":
        kd = exact_kd_terms(t.expand(64, V), teacher.expand(64, V))
    else:
        kd = sampled_kd_terms(estimator, logp, teacher.log_softmax(-1)[draws])
    gate = (torch.arange(64) % 2).to(D)  # half the tokens gated out
    loss = kdrl_token_loss(logp, logp.detach(), torch.zeros(64, dtype=D), kd, beta=beta, kd_open=gate,
                           pg_weight=1.0).total.sum()
    (grad,) = torch.autograd.grad(loss, t, retain_graph=True)
    assert grad.abs().sum() > 1e-8
    closed = kdrl_token_loss(logp, logp.detach(), torch.zeros(64, dtype=D), kd, beta=0.0, kd_open=gate,
                             pg_weight=1.0).total.sum()
    assert torch.autograd.grad(closed, t, allow_unused=True)[0].abs().sum() == 0


def test_a_closed_policy_gate_keeps_the_k1_reward_kd_signal():
    theta, teacher, draws = _setup(4)
    t = theta.clone().requires_grad_()
    logp = t.log_softmax(-1)[draws[:32]]
    kd = sampled_kd_terms("k1_reward", logp, teacher.log_softmax(-1)[draws[:32]])
    loss = kdrl_token_loss(logp, logp.detach(), torch.ones(32, dtype=D), kd, beta=0.1, kd_open=1.0,
                           pg_weight=0.0).total.sum()
    (grad,) = torch.autograd.grad(loss, t, retain_graph=True)
    (expected,) = torch.autograd.grad((-0.1 * kd.bonus * logp).sum(), t)  # the reward advantage is silenced
    assert torch.allclose(grad, expected, atol=1e-12)


# ---------------------------------------------------------------------------------------------- schedules


def test_constant_and_linear_schedules():
    assert KDRLConfig(beta=0.01).at(0) == (0.01, 1.0) == KDRLConfig(beta=0.01).at(10_000)
    linear = KDRLConfig(schedule="linear", beta=5e-3, beta_min=1e-3, anneal_steps=100)
    assert [round(linear.at(s)[0], 12) for s in (0, 50, 100, 500)] == [5e-3, 3e-3, 1e-3, 1e-3]
    assert all(linear.at(s)[1] == 1.0 for s in (0, 50, 100))


def test_switch_is_kd_only_then_reward_only():
    switch = KDRLConfig(schedule="switch", beta=0.2, switch_step=3)
    assert [switch.at(s) for s in (0, 2, 3, 9)] == [(0.2, 0.0), (0.2, 0.0), (0.0, 1.0), (0.0, 1.0)]
    plateau = KDRLConfig(schedule="switch_on_plateau", beta=0.2)
    assert plateau.at(50) == (0.2, 0.0) and plateau.at(50, switched=True) == (0.0, 1.0)
    kd_only = KDRLConfig(schedule="kd_only", beta=0.2)  # on-policy KD: the reward never trains
    assert kd_only.at(0) == kd_only.at(10_000) == (0.2, 0.0)


def test_schedules_refuse_missing_settings():
    with pytest.raises(ValidationError, match="anneal_steps"):
        KDRLConfig(schedule="linear")
    with pytest.raises(ValidationError, match="switch_step"):
        KDRLConfig(schedule="switch")


# ---------------------------------------------------------------------------------------------- gates

GROUPS = torch.tensor([[1.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0], [1.0, 0.0, 0.0, 0.0]])


def test_gates_on_grouped_rewards():
    none = KDRLConfig(gate="none").gates(GROUPS)
    assert none.kd.all() and none.pg.all()
    response = KDRLConfig(gate="response").gates(GROUPS)
    assert torch.equal(response.kd, GROUPS == 0) and response.pg.all()
    group = KDRLConfig(gate="group", tau=0.0).gates(GROUPS)  # no correct response in the group
    assert group.kd.tolist() == [[False] * 4, [True] * 4, [False] * 4, [False] * 4]
    looser = KDRLConfig(gate="group", tau=0.25).gates(GROUPS)
    assert looser.kd[:, 0].tolist() == [False, True, False, True]
    split = KDRLConfig(gate="split").gates(GROUPS)
    assert torch.equal(split.kd, GROUPS == 0) and torch.equal(split.pg, GROUPS == 1)


def test_teacher_rows_are_the_open_gates_while_beta_is_positive():
    cfg = KDRLConfig(gate="response", schedule="switch", beta=0.1, switch_step=2)
    assert torch.equal(teacher_rows(cfg, GROUPS, 0), GROUPS == 0)
    assert not teacher_rows(cfg, GROUPS, 2).any()  # reward-only phase: the teacher is not needed
    keep = torch.tensor([True, False, True, True])[:, None].expand_as(GROUPS)
    assert torch.equal(teacher_rows(cfg, GROUPS, 0, keep=keep), (GROUPS == 0) & keep)


def test_combinations_that_never_open_the_kd_term_are_named():
    assert never_opens(KDRLConfig()) is None
    assert "beta=0" in never_opens(KDRLConfig(beta=0.0))
    assert never_opens(KDRLConfig(beta=0.0, schedule="linear", beta_min=1e-3, anneal_steps=5)) is None
    assert "switch_step=0" in never_opens(KDRLConfig(schedule="switch", switch_step=0))
    assert "never below 0" in never_opens(KDRLConfig(gate="group", tau=-0.1))
    assert "drop_zero_variance" in never_opens(KDRLConfig(gate="group"), drop_zero_variance=True)
    assert "drop_zero_variance" in never_opens(KDRLConfig(gate="group", tau=0.2), drop_zero_variance=True,
                                               group_size=4)
    assert never_opens(KDRLConfig(gate="group", tau=0.25), drop_zero_variance=True, group_size=4) is None
    assert never_opens(KDRLConfig(gate="response"), drop_zero_variance=True) is None
