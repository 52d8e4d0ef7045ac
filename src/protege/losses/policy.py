"""Policy-gradient pieces of GRPO: group advantages, the clipped surrogate, and how per-token terms are averaged.

**Advantages.** Rewards come in groups, shaped (prompts, G): G responses to each prompt. A response's advantage
is A_i = (r_i − b_i) / s with

===============  ==============================================================================================
baseline
``mean``         b = the group's mean reward (GRPO)
``leave_one_out``b_i = the mean of the group's *other* G − 1 rewards (RLOO), i.e. A_i ∝ G/(G−1)·(r_i − mean)
scaling
``group_std``    s = the group's standard deviation (unbiased, over G) + ``eps`` (GRPO)
``batch_std``    s = the standard deviation of every reward of the call + ``eps``
``none``         s = 1 (Dr. GRPO: dividing by the group std up-weights near-unanimous groups)
===============  ==============================================================================================

A group whose rewards are all equal says nothing about which response is better: its advantages are set to
exactly 0 (never computed as 0 / eps, which rounding can turn into noise, or 0 / 0 = NaN), and
``zero_variance`` marks it, so a caller can count such groups and leave them out of the loss's units.

**Surrogate.** Per token, with ρ = exp(log π − log π_old), the loss is −min(ρ·A, clip(ρ, 1 − ε_low, 1 + ε_high)·A)
(PPO's clipped objective; ε_high > ε_low is DAPO's "clip higher"). When a rollout batch is used for one update
only, π_old is π itself (pass the detached log-probabilities): ρ = 1, the clip never binds, and the gradient is
exactly −A·∇log π.

**Units.** The training loop divides the step's summed loss by the step's units (see :mod:`protege.train.loop`).
Each aggregation mode is a weight on every token term of a sequence plus a number of units per sequence, so
that Σ weight·term / Σ units is the mode's mean however the step is split into micro-batches:

=================  ========================  =================  ===============================================
mode               weight of a token of o_i  units of o_i       the step's loss
=================  ========================  =================  ===============================================
``token_mean``     1                         |o_i|              Σ_i Σ_t term / Σ_i |o_i| (default)
``sequence_mean``  1 / |o_i|                 1                  mean over sequences of each one's token mean
                                                                (the GRPO paper; long answers' tokens count less)
``sequence_sum``   1 / L                     1                  Σ_i Σ_t term / (sequences · L), L fixed
                                                                (Dr. GRPO: no length bias)
=================  ========================  =================  ===============================================

A sequence left out (``keep`` False, e.g. a dropped zero-variance group) has weight 0 and no units.
"""

from __future__ import annotations

from typing import Callable, Literal, NamedTuple, Optional, get_args

import torch
from torch import Tensor

Baseline = Literal["mean", "leave_one_out"]
Scaling = Literal["group_std", "batch_std", "none"]
Units = Literal["token_mean", "sequence_mean", "sequence_sum"]
UNITS: tuple[str, ...] = get_args(Units)


class GroupAdvantages(NamedTuple):
    advantages: Tensor  # (prompts, G), exactly 0 in zero-variance groups
    zero_variance: Tensor  # (prompts,) bool: every reward of the group is equal


def _mean(rewards: Tensor) -> Tensor:
    return rewards.mean(1, keepdim=True).expand_as(rewards)


def _leave_one_out(rewards: Tensor) -> Tensor:
    g = rewards.shape[1]
    return (rewards.sum(1, keepdim=True) - rewards) / (g - 1)


def _group_std(rewards: Tensor) -> Tensor:
    return rewards.std(1, keepdim=True)


def _batch_std(rewards: Tensor) -> Tensor:
    return rewards.std().reshape(1, 1) if rewards.numel() > 1 else rewards.new_zeros(1, 1)


BASELINES: dict[str, Callable[[Tensor], Tensor]] = {"mean": _mean, "leave_one_out": _leave_one_out}
SCALINGS: dict[str, Optional[Callable[[Tensor], Tensor]]] = {
    "group_std": _group_std, "batch_std": _batch_std, "none": None}


def group_advantages(rewards: Tensor, *, baseline: Baseline = "mean", scaling: Scaling = "group_std",
                     eps: float = 1e-6) -> GroupAdvantages:
    """Advantages (prompts, G) of grouped ``rewards`` (prompts, G); see the module notes for the options."""
    if rewards.dim() != 2 or rewards.shape[1] < 2:
        raise ValueError(f"rewards have shape {tuple(rewards.shape)}; pass (prompts, G) with G >= 2 responses per "
                         "prompt (a group of one has no baseline)")
    if baseline not in BASELINES:
        raise ValueError(f"baseline={baseline!r}: use one of {', '.join(BASELINES)}")
    if scaling not in SCALINGS:
        raise ValueError(f"scaling={scaling!r}: use one of {', '.join(SCALINGS)}")
    if eps < 0:
        raise ValueError(f"eps={eps}: the scaling's epsilon must be >= 0")
    rewards = rewards.to(torch.promote_types(rewards.dtype, torch.float32))
    zero_variance = (rewards == rewards[:, :1]).all(1)
    advantages = rewards - BASELINES[baseline](rewards)
    scale = SCALINGS[scaling]
    if scale is not None:
        # Zero-variance groups are overwritten below; keep their (possibly zero) scale from dividing anything.
        s = scale(rewards).expand_as(rewards).masked_fill(zero_variance[:, None], 1.0)
        advantages = advantages / (s + eps)
    return GroupAdvantages(advantages.masked_fill(zero_variance[:, None], 0.0), zero_variance)


def clipped_surrogate(logprobs: Tensor, old_logprobs: Tensor, advantages: Tensor, *, eps_low: float = 0.2,
                      eps_high: float = 0.2) -> Tensor:
    """Per-token PPO loss −min(ρA, clip(ρ, 1 − eps_low, 1 + eps_high)A), ρ = exp(logprobs − old_logprobs).

    All three inputs have one entry per sampled token (advantages broadcast from their sequence); gradients flow
    through ``logprobs`` only.
    """
    if eps_low < 0 or eps_high < 0 or eps_low >= 1:
        raise ValueError(f"eps_low={eps_low}, eps_high={eps_high}: use 0 <= eps_low < 1 and eps_high >= 0")
    ratio = torch.exp(logprobs - old_logprobs.detach())
    advantages = advantages.detach()
    unclipped = ratio * advantages
    clipped = ratio.clamp(1.0 - eps_low, 1.0 + eps_high) * advantages
    return -torch.minimum(unclipped, clipped)


def _check_units(units: str, max_length: Optional[int]) -> None:
    if units not in UNITS:
        raise ValueError(f"units={units!r}: use one of {', '.join(UNITS)}")
    if units == "sequence_sum" and (max_length is None or max_length < 1):
        raise ValueError(f"units='sequence_sum' divides each sequence's sum by a fixed length; max_length="
                         f"{max_length}: pass the rollouts' max_new_tokens")


def sequence_weights(lengths: Tensor, units: Units, *, keep: Optional[Tensor] = None,
                     max_length: Optional[int] = None) -> Tensor:
    """The weight (sequences,) of every token term of each sequence, for the aggregation mode ``units``.

    ``lengths`` (sequences,) are the scored tokens of each sequence; ``keep`` (bool) leaves sequences out.
    """
    _check_units(units, max_length)
    dtype = torch.float64 if lengths.dtype == torch.float64 else torch.float32
    if units == "token_mean":
        weights = torch.ones(lengths.shape, dtype=dtype, device=lengths.device)
    elif units == "sequence_mean":
        weights = 1.0 / lengths.to(dtype).clamp_min(1.0)
    else:
        weights = torch.full(lengths.shape, 1.0 / max_length, dtype=dtype, device=lengths.device)
    return weights if keep is None else weights * keep.to(dtype)


def unit_count(lengths: Tensor, units: Units, *, keep: Optional[Tensor] = None) -> int:
    """The units (loss terms) the sequences contribute to the loop's normalisation, for ``units``."""
    _check_units(units, 1)
    per_sequence = lengths if units == "token_mean" else torch.ones_like(lengths)
    if keep is not None:
        per_sequence = per_sequence * keep.to(per_sequence.dtype)
    return int(per_sequence.sum())
