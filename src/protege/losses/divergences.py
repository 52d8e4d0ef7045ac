"""The divergence formulas, once: each works on two normalised log-probability tensors over the same support.

Every other path (dense logits, top-k with a tail bucket, chunked heads, classification) reduces its inputs to
such a pair and calls :func:`divergence`, so a formula is fixed in one place. Conventions: ``p`` is the
teacher, ``q`` the student; all logs are natural; the last dimension is the support and is summed over.

==================  ===========================================================  ==========================
kind                per-position value                                          endpoints
==================  ===========================================================  ==========================
``forward_kl``      KL(p‖q) = Σ p (log p − log q)          (mean-seeking)
``reverse_kl``      KL(q‖p) = Σ q (log q − log p)          (mode-seeking)
``jsd``             β KL(p‖m) + (1−β) KL(q‖m),  m = β p + (1−β) q               β=0: KL(p‖q), β=1: KL(q‖p)
``tvd``             ½ Σ |p − q|
``skew_forward_kl`` KL(p‖α p + (1−α) q)                    (DistiLLM SKL)        α=0: KL(p‖q); α=1 refused
``skew_reverse_kl`` KL(q‖(1−α) p + α q)                    (DistiLLM SRKL)       α=0: KL(q‖p); α=1 refused
==================  ===========================================================  ==========================

The generalized JSD shrinks like β·KL(p‖q) as β→0 and like (1−β)·KL(q‖p) as β→1, so the plain formula is
zero at both ends. At exactly β=0 and β=1 we return the limits of the *scaled* divergence, JSD/β and
JSD/(1−β), i.e. the plain KLs (the same choice TRL makes), never a silent zero. Skew KLs at α=1 compare a
distribution with itself and are identically zero, so α=1 is rejected with an explanation.
"""

from __future__ import annotations

import math
from typing import Literal, get_args

import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator
from torch import Tensor

Kind = Literal["forward_kl", "reverse_kl", "jsd", "tvd", "skew_forward_kl", "skew_reverse_kl"]
KINDS: tuple[str, ...] = get_args(Kind)


class DivergenceSpec(BaseModel):
    """Which divergence to compute and its parameters; validated once per call."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Kind = Field(description="Divergence between teacher p and student q; see the module table.")
    temperature: float = Field(
        1.0, gt=0, description="Softmax temperature applied to student and teacher logits before comparing."
    )
    beta: float = Field(
        0.5, ge=0, le=1,
        description="JSD interpolation: weight of the teacher in the mixture; 0 → KL(p‖q), 1 → KL(q‖p).",
    )
    alpha: float = Field(
        0.1, ge=0, description="Skew of the skew KLs (DistiLLM's α), in [0, 1); 0 gives the plain KL."
    )

    @field_validator("alpha")
    @classmethod
    def _alpha_below_one(cls, alpha: float) -> float:
        if alpha >= 1:
            raise ValueError(
                f"alpha={alpha}: a skew KL with alpha=1 compares a distribution with itself and is "
                "identically zero; use alpha in [0, 1) (DistiLLM uses 0.1)"
            )
        return alpha


def kl(log_p: Tensor, log_q: Tensor) -> Tensor:
    """KL(p‖q) summed over the last dimension, with 0·log 0 = 0 and no NaN in values or gradients.

    Positions where p is zero (log_p = −inf) contribute nothing; positions where p > 0 and q = 0 give +inf,
    which is the true value.
    """
    outside = torch.isneginf(log_p)
    # The common dense case: skipping the masking saves three (rows, V) temporaries.
    if not bool(outside.any()):
        return (log_p.exp() * (log_p - log_q)).sum(-1)
    lp = log_p.masked_fill(outside, 0.0)
    lq = log_q.masked_fill(outside, 0.0)
    return (lp.exp() * (lp - lq)).masked_fill(outside, 0.0).sum(-1)


def log_mixture(log_a: Tensor, log_b: Tensor, weight_a: float) -> Tensor:
    """log(w·a + (1−w)·b) for 0 < w < 1, mixed in probability space (never an average of logs)."""
    return torch.logaddexp(log_a + math.log(weight_a), log_b + math.log1p(-weight_a))


def divergence(
    kind: str, student_logp: Tensor, teacher_logp: Tensor, *, beta: float = 0.5, alpha: float = 0.1
) -> Tensor:
    """Per-position divergence of the student from the teacher; reduces the last (support) dimension.

    Both inputs must be normalised log-probabilities over the same support (``log_softmax`` of logits, or
    top-k buckets plus a tail bucket). Use :class:`DivergenceSpec` to validate ``beta``/``alpha`` first.
    """
    s, t = student_logp, teacher_logp
    if kind == "forward_kl" or (kind == "jsd" and beta == 0) or (kind == "skew_forward_kl" and alpha == 0):
        return kl(t, s)
    if kind == "reverse_kl" or (kind == "jsd" and beta == 1) or (kind == "skew_reverse_kl" and alpha == 0):
        return kl(s, t)
    if kind == "jsd":
        m = log_mixture(t, s, beta)
        return beta * kl(t, m) + (1 - beta) * kl(s, m)
    if kind == "tvd":
        return 0.5 * (t.exp() - s.exp()).abs().sum(-1)
    if kind == "skew_forward_kl":
        return kl(t, log_mixture(t, s, alpha))
    if kind == "skew_reverse_kl":
        return kl(s, log_mixture(s, t, alpha))
    raise ValueError(f"kind={kind!r} is not a divergence; use one of {', '.join(KINDS)}")
