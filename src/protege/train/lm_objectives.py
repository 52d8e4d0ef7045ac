"""Objectives for causal LM students: SFT on completions, logit KD from a teacher in memory or from cached top-k.

All of them score only the positions that predict a completion token (the batch's ``loss_mask``, see
:mod:`protege.train.lm_data`), and none materialises the student's (B, L, V) logits: the student's final
hidden states at those positions go through :func:`protege.losses.head_divergence`, which projects a chunk of
positions at a time and recomputes nothing in backward. Each returns the *sum* over those positions; the loop
divides by the step's global count.
"""

from __future__ import annotations

from typing import Any, Optional

import torch
from pydantic import Field
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from protege.losses import KINDS, Kind, ProjectedTeacher, TopKTeacher, head_divergence
from protege.core.section import Section

_NO_LOGITS = torch.empty(0, dtype=torch.long)  # logits_to_keep: compute none, we project ourselves


class DistillConfig(Section):
    """How the student is pulled towards the teacher, and how much plain cross-entropy is mixed in."""

    kind: Kind = Field("forward_kl", description=f"Token divergence: one of {', '.join(KINDS)}.")
    temperature: float = Field(1.0, gt=0, description="Softmax temperature of both distributions.")
    beta: float = Field(0.5, ge=0, le=1, description="JSD mixture weight of the teacher (kind: jsd).")
    alpha: float = Field(0.1, ge=0, lt=1, description="Skew of skew_forward_kl / skew_reverse_kl.")
    kd_weight: float = Field(1.0, ge=0, description="Weight of the divergence term.")
    ce_weight: float = Field(0.0, ge=0, description="Weight of cross-entropy on the completion tokens.")
    chunk_size: int = Field(32, ge=1, description="Completion positions projected to the vocabulary at once; "
                            "bounds the extra memory to chunk_size × vocabulary.")


def _unwrap(model: Any) -> Any:
    # DDP keeps the model in .module; peft and HF models answer get_output_embeddings themselves.
    return getattr(model, "module", model)


def completion_states(model: Any, batch: dict[str, Tensor]) -> Tensor:
    """The final (normed) hidden states (N, H) at the positions of ``batch["loss_mask"]``, in row-major order.

    The model is called through its own forward (so DDP and peft hooks run) with no logits computed.
    """
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False,
                output_hidden_states=True, logits_to_keep=_NO_LOGITS.to(batch["input_ids"].device))
    return out.hidden_states[-1][batch["loss_mask"]]


@torch.no_grad()
def frozen_states(model: Any, batch: dict[str, Tensor]) -> Tensor:
    """A frozen model's (teacher's, reference's) final hidden states (N, H) at the ``loss_mask`` positions.

    Runs the bare decoder (no per-layer hidden states kept, no logits), on the batch's device: the loop places
    batches, and the model follows them (GPU).
    """
    device = batch["input_ids"].device
    if next(model.parameters()).device != device:
        model.to(device)
    out = model.base_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False)
    return out.last_hidden_state[batch["loss_mask"]]


def output_head(model: Any) -> tuple[Tensor, Optional[Tensor]]:
    head = _unwrap(model).get_output_embeddings()
    if head is None:
        raise TypeError(f"{type(_unwrap(model)).__name__} has no output embeddings; LM objectives need a causal LM")
    return head.weight, getattr(head, "bias", None)


def next_tokens(batch: dict[str, Tensor]) -> Tensor:
    """The token each scored position must predict, (N,)."""
    return batch["input_ids"].roll(-1, dims=1)[batch["loss_mask"]]


def _target_logprobs(hidden: Tensor, weight: Tensor, bias: Optional[Tensor], targets: Tensor) -> Tensor:
    logits = torch.nn.functional.linear(hidden, weight, bias).float()
    return logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1)


def completion_logprobs(model: Any, batch: dict[str, Tensor], chunk_size: int = 32) -> Tensor:
    """log q(token) of every scored completion token, (N,) in row-major order, differentiable.

    The head runs ``chunk_size`` positions at a time under activation checkpointing, so only one chunk's
    logits exist at once, in the forward and again in the backward.
    """
    hidden = completion_states(model, batch)
    weight, bias = output_head(model)
    targets = next_tokens(batch)
    grads = torch.is_grad_enabled() and (hidden.requires_grad or weight.requires_grad)
    parts = []
    for start in range(0, hidden.shape[0], chunk_size):
        h, t = hidden[start:start + chunk_size], targets[start:start + chunk_size]
        parts.append(checkpoint(_target_logprobs, h, weight, bias, t, use_reentrant=False) if grads
                     else _target_logprobs(h, weight, bias, t))
    return torch.cat(parts) if parts else hidden.new_zeros(0, dtype=torch.float32)


def sequence_logprobs(model: Any, batch: dict[str, Tensor], chunk_size: int = 32) -> Tensor:
    """Σ log q over each row's completion tokens, (B,): the sequence log-probability preference losses use."""
    tokens = completion_logprobs(model, batch, chunk_size)
    rows = batch["loss_mask"].nonzero()[:, 0]
    return torch.zeros(batch["loss_mask"].shape[0], dtype=tokens.dtype, device=tokens.device).index_add(
        0, rows, tokens)


def cross_entropy_sum(hidden: Tensor, weight: Tensor, bias: Optional[Tensor], targets: Tensor,
                      chunk_size: int) -> Tensor:
    """Σ −log q(target): the forward KL from a one-hot teacher, through the same chunked head."""
    one_hot = TopKTeacher(targets.unsqueeze(-1), torch.zeros(len(targets), 1, device=hidden.device),
                          torch.full((len(targets),), float("-inf"), device=hidden.device))
    return head_divergence(hidden, weight, one_hot, bias=bias, kind="forward_kl", num_tokens=1,
                           chunk_size=chunk_size)


class _CompletionObjective:
    """Shared by the LM objectives: the loss terms are the scored completion positions."""

    def units(self, batch: dict[str, Tensor]) -> int:
        return int(batch["loss_mask"].sum())


class SFT(_CompletionObjective):
    """Cross-entropy on the completion tokens (supervised fine-tuning on the teacher's answers)."""

    def __init__(self, chunk_size: int = 32):
        self.chunk_size = chunk_size

    def __call__(self, model: Any, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        hidden = completion_states(model, batch)
        weight, bias = output_head(model)
        ce = cross_entropy_sum(hidden, weight, bias, next_tokens(batch), self.chunk_size)
        return ce, {"ce": float(ce.detach())}


class _KD(_CompletionObjective):
    def __init__(self, config: DistillConfig):
        self.config = config

    def _teacher(self, batch: dict[str, Tensor]) -> Any:
        raise NotImplementedError

    def __call__(self, model: Any, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, float]]:
        cfg = self.config
        hidden = completion_states(model, batch)
        weight, bias = output_head(model)
        total = torch.zeros((), device=hidden.device)
        metrics: dict[str, float] = {}
        if cfg.kd_weight > 0:
            kd = head_divergence(hidden, weight, self._teacher(batch), bias=bias, kind=cfg.kind,
                                 temperature=cfg.temperature, beta=cfg.beta, alpha=cfg.alpha, num_tokens=1,
                                 chunk_size=cfg.chunk_size)
            total = total + cfg.kd_weight * kd
            metrics["kd"] = float(kd.detach())
        if cfg.ce_weight > 0:
            ce = cross_entropy_sum(hidden, weight, bias, next_tokens(batch), cfg.chunk_size)
            total = total + cfg.ce_weight * ce
            metrics["ce"] = float(ce.detach())
        if "on_policy" in batch:
            metrics["on_policy"] = float(batch["on_policy"]) * self.units(batch)
        return total, metrics


class LogitKD(_KD):
    """Token-level KD against a teacher held in memory (same tokenizer as the student).

    The teacher runs without gradients; its final hidden states at the scored positions are kept and projected
    to logits one chunk at a time inside the divergence, so neither model's full logits ever exist.
    """

    def __init__(self, teacher: Any, config: DistillConfig):
        super().__init__(config)
        self.teacher = teacher.eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)

    def _teacher(self, batch: dict[str, Tensor]) -> ProjectedTeacher:
        weight, bias = output_head(self.teacher)
        return ProjectedTeacher(frozen_states(self.teacher, batch), weight, bias)


class CachedKD(_KD):
    """Token-level KD against teacher top-k log-probabilities carried in the batch (the teacher-logit cache).

    The batch holds ``teacher_topk_ids`` and ``teacher_topk_logprobs`` (B, L, k) aligned with ``input_ids``
    (row ``i`` is the teacher's distribution of token ``i + 1``, at the loss temperature) and optionally
    ``teacher_tail_logprob`` (B, L); only the ``loss_mask`` positions are read.
    """

    def _teacher(self, batch: dict[str, Tensor]) -> TopKTeacher:
        mask = batch["loss_mask"]
        tail = batch.get("teacher_tail_logprob")
        return TopKTeacher(batch["teacher_topk_ids"][mask], batch["teacher_topk_logprobs"][mask],
                           None if tail is None else tail[mask])
