"""GRPO's pieces against float64 hand computations: group advantages, the clipped surrogate, the units modes."""

from __future__ import annotations

import math

import pytest
import torch

from protege.losses.policy import clipped_surrogate, group_advantages, sequence_weights, unit_count

D = torch.float64
REWARDS = torch.tensor([[1.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]],
                       dtype=D)


def _std(values: list[float]) -> float:
    m = sum(values) / len(values)
    return math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1))


def test_mean_baseline_scaled_by_the_group_std():
    out = group_advantages(REWARDS, baseline="mean", scaling="group_std", eps=1e-6)
    assert out.zero_variance.tolist() == [False, True, True, False]
    for g, row in enumerate(REWARDS.tolist()):
        if g in (1, 2):
            continue
        mean, std = sum(row) / 4, _std(row)
        assert out.advantages[g].tolist() == pytest.approx([(r - mean) / (std + 1e-6) for r in row], abs=1e-12)


def test_leave_one_out_baseline_is_the_mean_of_the_other_rewards():
    out = group_advantages(REWARDS, baseline="leave_one_out", scaling="none")
    row = REWARDS[3].tolist()
    expected = [r - (sum(row) - r) / 3 for r in row]  # 1 - 0, 0 - 1/3, ...
    assert out.advantages[3].tolist() == pytest.approx(expected, abs=1e-12)
    assert out.advantages[0].tolist() == pytest.approx([1 - 1 / 3, -2 / 3, -2 / 3, 1 - 1 / 3], abs=1e-12)


def test_batch_std_divides_every_group_by_the_std_of_all_rewards():
    out = group_advantages(REWARDS, baseline="mean", scaling="batch_std", eps=0.0)
    std = _std(REWARDS.flatten().tolist())
    assert out.advantages[3].tolist() == pytest.approx([(r - 0.25) / std for r in REWARDS[3].tolist()], abs=1e-12)


def test_no_scaling_is_dr_grpo():
    out = group_advantages(REWARDS, scaling="none")
    assert out.advantages[0].tolist() == [0.5, -0.5, -0.5, 0.5]


@pytest.mark.parametrize("baseline", ["mean", "leave_one_out"])
@pytest.mark.parametrize("scaling", ["group_std", "batch_std", "none"])
def test_zero_variance_groups_are_exactly_zero_never_nan(baseline, scaling):
    # 0.1 three times does not average to exactly 0.1 in floating point; eps = 0 would divide 0 by 0.
    rewards = torch.tensor([[0.1, 0.1, 0.1], [1.0, 1.0, 1.0], [0.0, 1.0, 0.0]], dtype=D)
    out = group_advantages(rewards, baseline=baseline, scaling=scaling, eps=0.0)
    assert out.zero_variance.tolist() == [True, True, False]
    assert torch.equal(out.advantages[:2], torch.zeros(2, 3, dtype=D))
    assert torch.isfinite(out.advantages).all() and out.advantages[2].abs().sum() > 0
    every = group_advantages(torch.ones(2, 3), baseline=baseline, scaling=scaling, eps=0.0)
    assert torch.equal(every.advantages, torch.zeros(2, 3))


def test_groups_of_one_are_refused():
    with pytest.raises(ValueError, match="G >= 2"):
        group_advantages(torch.ones(3, 1))


def test_zero_variance_groups_give_exactly_zero_policy_gradient():
    torch.manual_seed(0)
    logits = torch.randn(6, 5, 7, dtype=D, requires_grad=True)  # 6 sequences (3 groups of 2), 5 tokens, V = 7
    tokens = torch.randint(0, 7, (6, 5))
    rewards = torch.tensor([[1.0, 1.0], [0.0, 1.0], [0.0, 0.0]], dtype=D)
    adv = group_advantages(rewards).advantages.flatten()[:, None].expand(6, 5)
    logp = logits.log_softmax(-1).gather(-1, tokens[..., None]).squeeze(-1)
    clipped_surrogate(logp, logp.detach(), adv).sum().backward()
    assert torch.equal(logits.grad[[0, 1, 4, 5]], torch.zeros(4, 5, 7, dtype=D))
    assert logits.grad[2].abs().sum() > 0 and logits.grad[3].abs().sum() > 0


def test_ratio_one_gives_the_plain_policy_gradient():
    torch.manual_seed(1)
    logits = torch.randn(8, 6, dtype=D, requires_grad=True)
    tokens, adv = torch.randint(0, 6, (8,)), torch.randn(8, dtype=D)
    logp = logits.log_softmax(-1).gather(-1, tokens[:, None]).squeeze(-1)
    loss = clipped_surrogate(logp, logp.detach(), adv, eps_low=0.01, eps_high=0.01)
    assert torch.equal(loss.detach(), -adv)
    (grad,) = torch.autograd.grad(loss.sum(), logits, retain_graph=True)
    (plain,) = torch.autograd.grad((-adv * logp).sum(), logits)
    assert torch.allclose(grad, plain, atol=1e-14)


def test_the_clip_stops_the_gradient_only_beyond_the_trust_region_in_the_advantages_direction():
    old = torch.zeros(4, dtype=D)
    logp = torch.log(torch.tensor([1.5, 1.5, 0.5, 0.5], dtype=D)).requires_grad_()
    adv = torch.tensor([1.0, -1.0, -1.0, 1.0], dtype=D)
    loss = clipped_surrogate(logp, old, adv, eps_low=0.2, eps_high=0.3)
    # ratio 1.5 > 1.3 with A > 0: clipped value 1.3, no gradient; A < 0: the unclipped (worse) term counts.
    # ratio 0.5 < 0.8 with A < 0: clipped value −0.8, no gradient; A > 0: unclipped.
    assert loss.tolist() == pytest.approx([-1.3, 1.5, 0.8, -0.5], abs=1e-12)
    loss.sum().backward()
    assert logp.grad.tolist() == pytest.approx([0.0, 1.5, 0.0, -0.5], abs=1e-12)


def test_each_units_mode_against_a_hand_computation():
    terms = [[1.0, 2.0, 3.0], [4.0], [5.0, 6.0]]  # per-token terms of three sequences of lengths 3, 1, 2
    lengths = torch.tensor([3, 1, 2])
    flat = torch.tensor([t for seq in terms for t in seq], dtype=D)
    owner = torch.tensor([0, 0, 0, 1, 2, 2])

    def loss(units, keep=None, max_length=None):
        w = sequence_weights(lengths, units, keep=keep, max_length=max_length).to(D)
        return float((w[owner] * flat).sum()) / unit_count(lengths, units, keep=keep)

    assert loss("token_mean") == pytest.approx(21 / 6)
    assert loss("sequence_mean") == pytest.approx((6 / 3 + 4 / 1 + 11 / 2) / 3)
    assert loss("sequence_sum", max_length=4) == pytest.approx((6 + 4 + 11) / (3 * 4))
    keep = torch.tensor([True, False, True])  # e.g. the second sequence's group had zero variance
    assert loss("token_mean", keep) == pytest.approx((6 + 11) / 5)
    assert loss("sequence_mean", keep) == pytest.approx((6 / 3 + 11 / 2) / 2)
    assert loss("sequence_sum", keep, max_length=4) == pytest.approx((6 + 11) / (2 * 4))


def test_units_modes_are_split_invariant_across_micro_batches():
    # The loop sums the micro-batches' weighted sums and divides by the step's units once.
    lengths = torch.tensor([3, 1, 2, 5])
    terms = torch.arange(1, 12, dtype=D)
    owner = torch.repeat_interleave(torch.arange(4), lengths)
    for units in ("token_mean", "sequence_mean", "sequence_sum"):
        w = sequence_weights(lengths, units, max_length=5).to(D)
        whole = float((w[owner] * terms).sum()) / unit_count(lengths, units)
        a, b = lengths[:2], lengths[2:]
        wa, wb = sequence_weights(a, units, max_length=5).to(D), sequence_weights(b, units, max_length=5).to(D)
        split = (float((wa[owner[:4]] * terms[:4]).sum()) + float((wb[owner[4:] - 2] * terms[4:]).sum())) / (
            unit_count(a, units) + unit_count(b, units))
        assert split == pytest.approx(whole)


def test_sequence_sum_needs_its_fixed_length():
    with pytest.raises(ValueError, match="max_new_tokens"):
        sequence_weights(torch.tensor([2]), "sequence_sum")
