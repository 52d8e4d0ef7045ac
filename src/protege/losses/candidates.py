"""Candidate-label distillation (CanDist, arXiv 2506.03857): learn one label from a set of plausible ones.

A teacher unsure of a text names a candidate set S of labels. The student's target t lives on S only:

    t₀ = p_T restricted to S, renormalised            (the teacher's own preference inside the set)
    t_{e+1} = m · t_e + (1 − m) · q_e restricted to S, renormalised     (after each epoch e)
    loss_i = − Σ_c t_i,c · log q_i,c                  (cross-entropy to the target)

with q the student's predicted distribution and m the momentum. Refinement lets the student settle which member
of the set is right from what it learns on all the other texts, instead of copying the teacher's (often noisy)
single top label. A set of one label has a one-hot target for ever, so its loss is plain cross-entropy.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _check(probs: Tensor, mask: Tensor, what: str) -> None:
    if probs.shape != mask.shape or probs.dim() != 2:
        raise ValueError(f"{what} {tuple(probs.shape)} and candidate mask {tuple(mask.shape)} must both be (N, C)")
    if mask.dtype != torch.bool:
        raise ValueError(f"the candidate mask must be boolean, got {mask.dtype}")
    empty = ~mask.any(-1)
    if empty.any():
        raise ValueError(f"row {int(empty.nonzero()[0])} has an empty candidate set; every set needs a label")


def restrict(probs: Tensor, mask: Tensor) -> Tensor:
    """``probs`` with mass outside each row's set removed and the rest renormalised to sum to 1.

    A row with no mass on its set (a teacher certain of a label outside it) becomes uniform on the set.
    """
    _check(probs, mask, "probs")
    kept = torch.where(mask, probs.clamp_min(0), torch.zeros_like(probs))
    total = kept.sum(-1, keepdim=True)
    uniform = mask.to(probs.dtype) / mask.sum(-1, keepdim=True)
    return torch.where(total > 0, kept / total.clamp_min(torch.finfo(probs.dtype).tiny), uniform)


def refine(targets: Tensor, student_probs: Tensor, mask: Tensor, momentum: float) -> Tensor:
    """One refinement: ``momentum`` of the old target plus the rest of the student's prediction on the set."""
    if not 0 <= momentum <= 1:
        raise ValueError(f"momentum={momentum}: must be in [0, 1] (1 keeps the teacher's target unchanged)")
    moved = momentum * targets + (1 - momentum) * restrict(student_probs.to(targets.dtype), mask)
    return restrict(moved, mask)  # renormalised again: rounding must not let mass drift off the set


def candidate_loss(student_logits: Tensor, targets: Tensor) -> Tensor:
    """Summed cross-entropy of (N, C) ``student_logits`` to (N, C) target rows (zero outside each set)."""
    if student_logits.shape != targets.shape:
        raise ValueError(f"student_logits {tuple(student_logits.shape)} and targets {tuple(targets.shape)} differ")
    dtype = torch.promote_types(student_logits.dtype, torch.float32)
    logp = torch.log_softmax(student_logits.to(dtype), dim=-1)
    # Where the target is 0 the term is 0 even if log q is -inf; multiply-then-sum would give NaN there.
    return -torch.where(targets > 0, targets.to(dtype) * logp, torch.zeros_like(logp)).sum()
