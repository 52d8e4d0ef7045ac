"""DPO against its closed form in float64: the loss, and the gradient with respect to the policy log-probs."""

from __future__ import annotations

import math

import pytest
import torch

from protege.losses import dpo_loss, dpo_margin


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


@pytest.mark.parametrize("beta, nll_weight", [(0.1, 0.0), (0.5, 0.0), (2.0, 0.0), (0.1, 1.0), (0.3, 0.25)])
def test_dpo_matches_the_closed_form_and_its_gradient(beta, nll_weight):
    pc = [-12.0, -30.5, -3.0, -50.0]
    pr = [-14.0, -29.0, -9.0, -10.0]
    rc = [-13.0, -31.0, -3.5, -40.0]
    rr = [-13.5, -30.0, -8.0, -12.0]
    tokens = [6.0, 12.0, 3.0, 20.0]
    policy_c = torch.tensor(pc, dtype=torch.float64, requires_grad=True)
    policy_r = torch.tensor(pr, dtype=torch.float64, requires_grad=True)
    ref_c = torch.tensor(rc, dtype=torch.float64, requires_grad=True)
    ref_r = torch.tensor(rr, dtype=torch.float64, requires_grad=True)
    loss = dpo_loss(policy_c, policy_r, ref_c, ref_r, beta=beta, nll_weight=nll_weight,
                    chosen_tokens=torch.tensor(tokens, dtype=torch.float64))
    loss.sum().backward()
    for i in range(4):
        delta = (pc[i] - rc[i]) - (pr[i] - rr[i])
        expected = math.log1p(math.exp(-beta * delta)) + nll_weight * (-pc[i] / tokens[i])
        assert float(loss[i]) == pytest.approx(expected, rel=1e-12)
        grad = -beta * sigmoid(-beta * delta)
        assert float(policy_c.grad[i]) == pytest.approx(grad - nll_weight / tokens[i], rel=1e-12)
        assert float(policy_r.grad[i]) == pytest.approx(-grad, rel=1e-12)
    assert ref_c.grad is None and ref_r.grad is None  # the reference is a constant
    assert torch.equal(dpo_margin(policy_c, policy_r, ref_c, ref_r).detach(),
                       torch.tensor([(a - c) - (b - d) for a, b, c, d in zip(pc, pr, rc, rr)], dtype=torch.float64))


def test_dpo_at_the_reference_is_log_two_and_large_margins_do_not_overflow():
    zero = torch.zeros(3, dtype=torch.float64)
    assert torch.allclose(dpo_loss(zero, zero, zero, zero), torch.full((3,), math.log(2), dtype=torch.float64))
    big = torch.tensor([1e4], dtype=torch.float64)
    assert float(dpo_loss(-big, big, big, -big, beta=1.0)) == pytest.approx(4e4)
    assert float(dpo_loss(big, -big, -big, big, beta=1.0)) == 0.0


def test_dpo_bad_input():
    x = torch.zeros(2)
    with pytest.raises(ValueError, match="beta=0"):
        dpo_loss(x, x, x, x, beta=0)
    with pytest.raises(ValueError, match="needs chosen_tokens"):
        dpo_loss(x, x, x, x, nll_weight=1.0)
    with pytest.raises(ValueError, match="one entry per pair"):
        dpo_loss(x, torch.zeros(3), x, x)
