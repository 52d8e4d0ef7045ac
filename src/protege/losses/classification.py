"""Soft-label distillation for classifiers (Hinton et al.): tempered KL to the teacher plus hard-label CE.

    loss = (1 − w) · T² · mean_i KL(p_T,i ‖ q_T,i) + w · mean_{labelled i} CE(q_i, y_i)

with p_T = softmax(log p / T) the teacher's label distribution at temperature T, q_T = softmax(z / T) the
student's, w = ``hard_weight``. T² keeps the soft term's gradient scale independent of T, since the gradient
of the tempered KL shrinks as 1/T². The cross-entropy uses the untempered student.
"""

from __future__ import annotations

import torch
from torch import Tensor

from protege.losses.divergences import divergence


def classification_kd(
    student_logits: Tensor,
    teacher_probs: Tensor,
    labels: Tensor | None = None,
    *,
    temperature: float = 1.0,
    hard_weight: float = 0.0,
    num_items: int | None = None,
) -> Tensor:
    """Distillation loss for a batch of N examples over C classes.

    ``student_logits`` (N, C); ``teacher_probs`` (N, C) rows of probabilities (e.g. the teacher's normalised
    label scores), re-tempered here as softmax(log p / T); ``labels`` (N,) gold class ids, −100 where
    unknown, needed when ``hard_weight`` > 0. Both means are over this batch unless ``num_items`` gives the
    global number of examples of the step (then the CE is also divided by it).
    """
    if student_logits.shape != teacher_probs.shape or student_logits.dim() != 2:
        raise ValueError(f"student_logits {tuple(student_logits.shape)} and teacher_probs "
                         f"{tuple(teacher_probs.shape)} must both be (N, C)")
    if temperature <= 0:
        raise ValueError(f"temperature={temperature}: must be > 0 (1 = no softening; Hinton used 2-20)")
    if not 0 <= hard_weight <= 1:
        raise ValueError(f"hard_weight={hard_weight}: must be in [0, 1] (the gold-label cross-entropy's "
                         "weight)")
    if hard_weight > 0 and labels is None:
        raise ValueError("hard_weight > 0 needs labels; pass labels (N,) with -100 for unlabelled rows, or "
                         "hard_weight=0")
    probs = teacher_probs.detach()
    if probs.numel() and (probs.min() < 0 or (probs.sum(-1) - 1).abs().max() > 1e-3):
        raise ValueError("teacher_probs must be non-negative rows summing to 1; pass softmax(teacher_logits)")
    dtype = torch.promote_types(student_logits.dtype, torch.float32)
    student_logp = torch.log_softmax(student_logits.to(dtype) / temperature, dim=-1)
    teacher_logp = torch.log_softmax(probs.to(dtype).log() / temperature, dim=-1)
    n = num_items if num_items is not None else max(student_logits.shape[0], 1)
    soft = divergence("forward_kl", student_logp, teacher_logp).sum() * temperature**2 / n
    if hard_weight == 0:
        return soft
    labelled = int((labels != -100).sum()) if num_items is None else n
    hard = torch.nn.functional.cross_entropy(student_logits.to(dtype), labels, ignore_index=-100,
                                             reduction="sum") / max(labelled, 1)
    return (1 - hard_weight) * soft + hard_weight * hard
