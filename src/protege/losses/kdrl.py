"""KDRL: GRPO's rule-based reward plus a reverse KL from the student to a teacher on the student's own rollouts.

For a scored token x of a rollout, with q the student, p_T the teacher and log r = log p_T(x) − log q(x)::

    loss = surrogate(w_pg·A + β·g·bonus) + β·g·KD

summed with the aggregation weights of :mod:`protege.losses.policy` and divided by the step's units. A is the
response's group advantage, β = β(step) comes from a schedule, g ∈ {0, 1} is the response's KD gate and w_pg the
weight of the policy-gradient term (gate times schedule). Gradients are per position with the sampled prefix
held fixed, as in token-level KD.

================  ===================================  ===========================================================
estimator         term                                 expected gradient over x ~ q
================  ===================================  ===========================================================
``k2`` (default)  KD = ½ (log r)²                      ∇ KL(q‖p_T), the reverse KL (KDRL's choice)
``k1_reward``     bonus = log r, detached: the         ∇ KL(q‖p_T) by the score function, −E[log r · ∇log q]; the
                  log-ratio joins the advantage        KL acts as a per-token reward and is clipped like one
``k3``            KD = r − 1 − log r                   ∇ KL(p_T‖q), the *forward* KL, although its value estimates
                                                       the reverse one (GRPO's reference KL; for parity with verl)
``exact``         KD = KL(q‖p_T) at the position,      ∇ KL(q‖p_T) with no estimator variance; needs the teacher's
                  summed over the whole vocabulary     full distribution at every scored position
================  ===================================  ===========================================================

``k1`` *as a loss* (log q(x) − log p_T(x)) is refused: its gradient is ∇log q(x), whose expectation over x ~ q is
Σ_x q ∇log q = ∇ Σ_x q = 0, so on-policy it trains on noise alone (OpenRLHF#1309; AReaL's joint KDRL loss).
Its place is the reward: ``k1_reward``.

**Schedules** give (β, schedule weight of the policy-gradient term) at an optimizer step: ``constant`` (β0, 1);
``linear`` (β0 → β_min over ``anneal_steps`` steps, then β_min; 1); ``switch`` (β0, 0) before ``switch_step``
and (0, 1) from it: KD only, then reward only; ``switch_on_plateau`` likewise, switching once the caller reports
that the held-out KL stopped improving; ``kd_only`` (β0, 0) throughout: on-policy distillation by the reverse
KL alone, on the same rollouts (the reward is computed but trains nothing).

**Gates** decide per response, from its group's binary rewards, whether the KD term applies and whether the
policy-gradient term does: ``none`` (both everywhere); ``response`` (KD on incorrect responses only); ``group``
(KD on the responses of groups whose mean reward ≤ τ; τ = 0 is "no correct response"); ``split`` (correct
responses: policy gradient only; incorrect ones: KD only). The teacher is needed only where the KD gate is open
and β > 0: :func:`teacher_rows`.
"""

from __future__ import annotations

from typing import Any, Callable, Literal, NamedTuple, Optional, get_args

import torch
from pydantic import Field, field_validator, model_validator
from torch import Tensor

from protege.losses.divergences import DivergenceSpec
from protege.losses.policy import clipped_surrogate
from protege.losses.sampled import kl_estimates
from protege.losses.teachers import row_divergence
from protege.core.section import Section

Estimator = Literal["k2", "k1_reward", "k3", "exact"]
ESTIMATORS: tuple[str, ...] = get_args(Estimator)
Schedule = Literal["constant", "linear", "switch", "switch_on_plateau", "kd_only"]
GateKind = Literal["none", "response", "group", "split"]

K1_REFUSED = (
    "estimator 'k1' as a loss is refused: its per-token gradient is ∇log q(x), whose expectation over the "
    "student's own samples is Σ_x q(x)∇log q(x) = ∇Σ_x q(x) = 0, so it trains on noise only. Use 'k2' (the "
    "default: ½(log p_T − log q)², the reverse-KL gradient) or 'k1_reward' (the log-ratio added to the advantage)")


def check_estimator(name: str) -> None:
    if name == "k1":
        raise ValueError(K1_REFUSED)
    if name not in ESTIMATORS:
        raise ValueError(f"estimator={name!r}: use one of {', '.join(ESTIMATORS)} (see protege.losses.kdrl)")


class KDTerms(NamedTuple):
    """Per-token pieces of the KD term: ``loss`` (differentiable, weighted by β), ``bonus`` (detached, added to the
    advantage with weight β) and ``value`` (detached, the unweighted KD term that is reported)."""

    loss: Tensor
    bonus: Tensor
    value: Tensor


def _k2(logprobs: Tensor, teacher_logprobs: Tensor) -> KDTerms:
    loss = kl_estimates(logprobs, teacher_logprobs, estimator="k2")
    return KDTerms(loss, torch.zeros_like(loss).detach(), loss.detach())


def _k3(logprobs: Tensor, teacher_logprobs: Tensor) -> KDTerms:
    loss = kl_estimates(logprobs, teacher_logprobs, estimator="k3")
    return KDTerms(loss, torch.zeros_like(loss).detach(), loss.detach())


def _k1_reward(logprobs: Tensor, teacher_logprobs: Tensor) -> KDTerms:
    log_r = (teacher_logprobs - logprobs).detach()
    return KDTerms(torch.zeros_like(log_r), log_r, -log_r)


SAMPLED: dict[str, Callable[[Tensor, Tensor], KDTerms]] = {"k2": _k2, "k1_reward": _k1_reward, "k3": _k3}


def sampled_kd_terms(estimator: str, logprobs: Tensor, teacher_logprobs: Tensor) -> KDTerms:
    """KD terms of the sampled-token estimators from log q(x) and log p_T(x) of the sampled tokens."""
    check_estimator(estimator)
    if estimator not in SAMPLED:
        raise ValueError(f"estimator={estimator!r} needs the full distributions: use exact_kd_terms")
    return SAMPLED[estimator](logprobs, teacher_logprobs)


_REVERSE_KL = DivergenceSpec(kind="reverse_kl")


def exact_kd_terms(student_logits: Tensor, teacher_logits: Tensor) -> KDTerms:
    """The ``exact`` estimator: KL(q‖p_T) over the whole vocabulary at each position, from logits (n, V).

    The same row divergence :func:`protege.losses.head_divergence` applies chunk by chunk.
    """
    kl = row_divergence(student_logits, teacher_logits.detach(), _REVERSE_KL)
    return KDTerms(kl, torch.zeros_like(kl).detach(), kl.detach())


class TokenLoss(NamedTuple):
    total: Tensor  # the per-token loss to minimise
    pg: Tensor  # its policy-gradient part, surrogate(w_pg·A + β·g·bonus)
    kd: Tensor  # the unweighted KD value where the gate is open, else 0 (detached)


def kdrl_token_loss(logprobs: Tensor, old_logprobs: Tensor, advantages: Tensor, kd: KDTerms, *,
                    beta: float, kd_open: Tensor | float, pg_weight: Tensor | float, eps_low: float = 0.2,
                    eps_high: float = 0.2) -> TokenLoss:
    """The per-token KDRL loss of the module notes; every tensor argument has one entry per scored token.

    Scaling the advantage by ``pg_weight`` >= 0 scales the clipped surrogate by the same factor, so a closed
    policy-gradient gate silences the reward without silencing a ``k1_reward`` bonus.
    """
    kd_weight = beta * kd_open
    pg = clipped_surrogate(logprobs, old_logprobs, pg_weight * advantages + kd_weight * kd.bonus,
                           eps_low=eps_low, eps_high=eps_high)
    return TokenLoss(pg + kd_weight * kd.loss, pg, (kd.value * kd_open).detach())


# ---------------------------------------------------------------------------------------------- schedules


def _constant(cfg: "KDRLConfig", step: int, switched: bool) -> tuple[float, float]:
    return cfg.beta, 1.0


def _linear(cfg: "KDRLConfig", step: int, switched: bool) -> tuple[float, float]:
    progress = min(step / cfg.anneal_steps, 1.0)
    return cfg.beta + (cfg.beta_min - cfg.beta) * progress, 1.0


def _switch(cfg: "KDRLConfig", step: int, switched: bool) -> tuple[float, float]:
    return (cfg.beta, 0.0) if step < cfg.switch_step else (0.0, 1.0)


def _switch_on_plateau(cfg: "KDRLConfig", step: int, switched: bool) -> tuple[float, float]:
    return (0.0, 1.0) if switched else (cfg.beta, 0.0)


def _kd_only(cfg: "KDRLConfig", step: int, switched: bool) -> tuple[float, float]:
    return cfg.beta, 0.0


SCHEDULES: dict[str, Callable[["KDRLConfig", int, bool], tuple[float, float]]] = {
    "constant": _constant, "linear": _linear, "switch": _switch, "switch_on_plateau": _switch_on_plateau,
    "kd_only": _kd_only}


# ---------------------------------------------------------------------------------------------- gates


class Gate(NamedTuple):
    kd: Tensor  # (prompts, G) bool: the KD term applies to the response
    pg: Tensor  # (prompts, G) bool: the policy-gradient term applies to the response


def _everywhere(rewards: Tensor, tau: float) -> Gate:
    on = torch.ones_like(rewards, dtype=torch.bool)
    return Gate(on, on)


def _incorrect(rewards: Tensor, tau: float) -> Gate:
    return Gate(rewards == 0, torch.ones_like(rewards, dtype=torch.bool))


def _failing_group(rewards: Tensor, tau: float) -> Gate:
    return Gate((rewards.mean(1, keepdim=True) <= tau).expand_as(rewards), torch.ones_like(rewards, dtype=torch.bool))


def _split(rewards: Tensor, tau: float) -> Gate:
    return Gate(rewards == 0, rewards != 0)


GATES: dict[str, Callable[[Tensor, float], Gate]] = {
    "none": _everywhere, "response": _incorrect, "group": _failing_group, "split": _split}


class KDRLConfig(Section):
    """The teacher term of KDRL: estimator, coefficient schedule and reward-guided gate."""

    estimator: Estimator = Field("k2", description="KL estimator: k2 (default), k1_reward, k3 (forward-KL "
                                 "gradient, for parity with verl) or exact (full vocabulary); k1 is refused.")
    beta: float = Field(5e-3, ge=0, description="β0, the KD coefficient (at the start of a linear schedule).")
    schedule: Schedule = Field("constant", description="How β evolves: constant, linear (β0 → beta_min), switch "
                               "(KD only before switch_step, reward only after), switch_on_plateau or kd_only "
                               "(on-policy KD alone).")
    beta_min: float = Field(1e-3, ge=0, description="β at the end of a linear schedule.")
    anneal_steps: Optional[int] = Field(None, ge=1, description="Steps of the linear schedule from β0 to beta_min.")
    switch_step: Optional[int] = Field(None, ge=0, description="First step of reward-only training (schedule: "
                                       "switch).")
    gate: GateKind = Field("none", description="Where the KD term applies: none (everywhere), response (incorrect "
                           "responses), group (groups with mean reward <= tau), split (incorrect ones get KD "
                           "only, correct ones the reward only).")
    tau: float = Field(0.0, description="Group gate threshold on the group's mean reward; 0: no correct response.")

    @field_validator("estimator", mode="before")
    @classmethod
    def _no_k1(cls, value: Any) -> Any:
        if value == "k1":
            raise ValueError(K1_REFUSED)
        return value

    @model_validator(mode="after")
    def _schedule_settings(self) -> "KDRLConfig":
        if self.schedule == "linear" and self.anneal_steps is None:
            raise ValueError("schedule 'linear' needs anneal_steps (the steps from beta to beta_min), e.g. 100")
        if self.schedule == "switch" and self.switch_step is None:
            raise ValueError("schedule 'switch' needs switch_step (the first reward-only step), e.g. 50")
        return self

    def at(self, step: int, switched: bool = False) -> tuple[float, float]:
        """(β, schedule weight of the policy-gradient term) at optimizer step ``step`` (0-based).

        ``switched``: the held-out KL has stopped improving (schedule ``switch_on_plateau``).
        """
        return SCHEDULES[self.schedule](self, step, switched)

    def gates(self, rewards: Tensor) -> Gate:
        """The KD and policy-gradient gates of each response of grouped binary ``rewards`` (prompts, G)."""
        return GATES[self.gate](rewards, self.tau)


def teacher_rows(config: KDRLConfig, rewards: Tensor, step: int, *, switched: bool = False,
                 keep: Optional[Tensor] = None) -> Tensor:
    """(prompts, G) bool: the responses the teacher must score at ``step`` (KD gate open, β > 0, kept)."""
    beta, _ = config.at(step, switched)
    rows = config.gates(rewards).kd & (beta > 0)
    return rows if keep is None else rows & keep


def never_opens(config: KDRLConfig, *, drop_zero_variance: bool = False,
                group_size: Optional[int] = None) -> Optional[str]:
    """Why the KD term can never apply with these settings, or None when it can."""
    if config.schedule == "switch" and config.switch_step == 0:
        return "schedule 'switch' with switch_step=0 trains on the reward only from the first step"
    if config.beta == 0 and (config.schedule != "linear" or config.beta_min == 0):
        return f"beta=0 with schedule '{config.schedule}' keeps the KD coefficient at zero"
    if config.gate == "group":
        if config.tau < 0:
            return f"gate 'group' with tau={config.tau}: a group's mean reward is never below 0"
        # Binary rewards give a group of G the means k/G, and the groups with mean 0 have zero variance.
        only_failing = config.tau <= 0 or (group_size is not None and config.tau < 1 / group_size)
        if drop_zero_variance and only_failing:
            return (f"gate 'group' with tau={config.tau} opens only on groups with no correct response, and "
                    "drop_zero_variance removes exactly those from the loss; raise tau to at least 1/G or keep "
                    "the zero-variance groups")
    return None
