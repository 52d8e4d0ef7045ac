"""Divergences and objectives for distillation: pure tensor functions with stated direction, temperature,
masking and reduction. See docs/losses.md for the formulas and when to use each."""

from protege.losses.classification import classification_kd
from protege.losses.divergences import KINDS, DivergenceSpec, Kind, divergence, kl
from protege.losses.preference import dpo_loss, dpo_margin
from protege.losses.reduction import count_tokens
from protege.losses.sampled import kl_estimates, sampled_kl
from protege.losses.teachers import (
    ProjectedTeacher,
    SampledTeacher,
    TopKTeacher,
    sample_from_logits,
    topk_from_logits,
)
from protege.losses.token import head_divergence, sampled_logit_kl, token_divergence, topk_divergence

__all__ = [
    "KINDS",
    "DivergenceSpec",
    "Kind",
    "ProjectedTeacher",
    "SampledTeacher",
    "TopKTeacher",
    "classification_kd",
    "count_tokens",
    "divergence",
    "dpo_loss",
    "dpo_margin",
    "head_divergence",
    "kl",
    "kl_estimates",
    "sample_from_logits",
    "sampled_kl",
    "sampled_logit_kl",
    "token_divergence",
    "topk_divergence",
    "topk_from_logits",
]
