"""Preference losses over sequence log-probabilities: DPO with an optional NLL term on the chosen response.

For a pair (chosen c, rejected r) of responses to one prompt, with summed completion log-probabilities π under
the policy and ref under the frozen reference, the margin is

    Δ = (π_c − ref_c) − (π_r − ref_r)

and the sigmoid DPO loss is −log σ(βΔ), whose gradient is ∂/∂π_c = −β σ(−βΔ) = −∂/∂π_r. DPO can lower the
chosen response's likelihood while it widens the margin (notably on self-generated math); the usual fix adds
``nll_weight`` × the chosen response's negative log-likelihood per token, −π_c / |c|.

The functions return one term per pair; the caller sums them and divides by the number of pairs of the whole
step (the training loop's normalisation). Reference log-probabilities never receive gradients.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor


def _same_shape(**tensors: Tensor) -> None:
    shapes = {name: tuple(t.shape) for name, t in tensors.items() if t is not None}
    if len(set(shapes.values())) > 1:
        raise ValueError(f"one entry per pair in every input: got shapes {shapes}")


def dpo_margin(policy_chosen: Tensor, policy_rejected: Tensor, ref_chosen: Tensor, ref_rejected: Tensor) -> Tensor:
    """Δ per pair: how much more the policy prefers the chosen response than the reference does."""
    _same_shape(policy_chosen=policy_chosen, policy_rejected=policy_rejected, ref_chosen=ref_chosen,
                ref_rejected=ref_rejected)
    return (policy_chosen - ref_chosen.detach()) - (policy_rejected - ref_rejected.detach())


def dpo_loss(policy_chosen: Tensor, policy_rejected: Tensor, ref_chosen: Tensor, ref_rejected: Tensor, *,
             beta: float = 0.1, nll_weight: float = 0.0, chosen_tokens: Optional[Tensor] = None) -> Tensor:
    """Per-pair −log σ(βΔ) + nll_weight · (−π_c / chosen_tokens).

    Inputs are summed sequence log-probabilities, one per pair; ``chosen_tokens`` (the chosen responses' token
    counts) is needed when ``nll_weight`` > 0.
    """
    if beta <= 0:
        raise ValueError(f"beta={beta}: the DPO temperature must be > 0 (0.1 is usual)")
    if nll_weight < 0:
        raise ValueError(f"nll_weight={nll_weight}: must be >= 0 (0 turns the NLL term off)")
    margin = dpo_margin(policy_chosen, policy_rejected, ref_chosen, ref_rejected)
    loss = -torch.nn.functional.logsigmoid(beta * margin)
    if nll_weight > 0:
        if chosen_tokens is None:
            raise ValueError("nll_weight > 0 needs chosen_tokens: the token count of each chosen response")
        _same_shape(policy_chosen=policy_chosen, chosen_tokens=chosen_tokens)
        loss = loss + nll_weight * (-policy_chosen / chosen_tokens.clamp_min(1).to(policy_chosen.dtype))
    return loss
