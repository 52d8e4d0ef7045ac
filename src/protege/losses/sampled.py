"""KL estimators from tokens the student sampled itself (on-policy KD, KD+RL).

For tokens x ~ q (the student) and the log-ratio log r = log p(x) − log q(x) against the teacher p:

=====  =====================  ===================================  ==========================================
name   per-token value        value, in expectation over x ~ q      gradient of the value with x held fixed
=====  =====================  ===================================  ==========================================
k1     −log r                 KL(q‖p), unbiased, high variance      0 in expectation: useless as a loss; use
                                                                    it as a reward (score function)
k2     ½ (log r)²             biased (≈ KL(q‖p) when q ≈ p), ≥ 0    ∇ KL(q‖p), unbiased: the on-policy loss
k3     r − 1 − log r          KL(q‖p), unbiased, ≥ 0, low variance  ∇ KL(p‖q), the *forward* KL's gradient
=====  =====================  ===================================  ==========================================

So: to *report* the reverse KL use k3 (or k1); to *minimise* the reverse KL by backpropagating through the
student's log-probabilities use k2; k3 as a loss (as in GRPO) optimises the forward KL instead; k1 belongs in
the reward. Gradients flow through ``student_logprobs`` only.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from protege.losses.reduction import as_mask, reduce_sum

Estimator = Literal["k1", "k2", "k3"]


def kl_estimates(student_logprobs: Tensor, teacher_logprobs: Tensor, *, estimator: Estimator) -> Tensor:
    """Per-token estimate (same shape as the inputs) of KL(q‖p) from sampled tokens' log-probabilities."""
    log_r = teacher_logprobs.detach() - student_logprobs
    if estimator == "k1":
        return -log_r
    if estimator == "k2":
        return 0.5 * log_r.square()
    if estimator == "k3":
        return torch.expm1(log_r) - log_r
    raise ValueError(f"estimator={estimator!r}: use 'k1', 'k2' or 'k3' (see protege.losses.sampled)")


def sampled_kl(
    student_logprobs: Tensor,
    teacher_logprobs: Tensor,
    mask: Tensor,
    *,
    estimator: Estimator = "k2",
    num_tokens: int | Tensor | None = None,
) -> Tensor:
    """Mean KL estimate over unmasked sampled tokens, with the reduction of :func:`token_divergence`.

    ``student_logprobs`` and ``teacher_logprobs`` (...) are log q(x_t) and log p(x_t) of the tokens the
    student sampled; ``mask`` (...) marks completion tokens. The default ``k2`` gives the unbiased
    reverse-KL gradient.
    """
    if student_logprobs.shape != teacher_logprobs.shape:
        raise ValueError(f"student_logprobs {tuple(student_logprobs.shape)} and teacher_logprobs "
                         f"{tuple(teacher_logprobs.shape)} must have one entry per sampled token each")
    keep = as_mask(mask, student_logprobs.shape)
    # Masked entries may hold -inf or garbage; zero them before the arithmetic so no NaN reaches the gradient.
    s = student_logprobs.masked_fill(~keep, 0.0)
    t = teacher_logprobs.masked_fill(~keep, 0.0)
    values = kl_estimates(s, t, estimator=estimator).masked_fill(~keep, 0.0)
    return reduce_sum(values.sum(), keep, num_tokens)
