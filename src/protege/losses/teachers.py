"""The shapes a teacher's next-token distribution can arrive in, and how each meets the student's.

* dense logits: a tensor ``(N, V)``, or a callable ``(start, end) -> (end - start, V)`` that produces them a
  chunk at a time (e.g. :class:`ProjectedTeacher`), so the teacher's logits need not all exist at once;
* :class:`TopKTeacher`: the k most likely tokens with their log-probabilities and the rest of the mass as one
  tail bucket (cached logits, OpenAI-compatible servers, which give k ≤ 20);
* :class:`SampledTeacher`: tokens drawn from the teacher with importance weights (Sparse Logit Sampling), an
  unbiased sparse stand-in for the full distribution in the forward KL.

Sparse forms describe the teacher *at the loss temperature*: the mass of an unseen tail at another temperature
cannot be recovered from top-k log-probabilities, so tempering happens when they are made
(:func:`topk_from_logits`, :func:`sample_from_logits`, or a server asked to sample at that temperature).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Callable, Union

import torch
from torch import Tensor

from protege.losses.divergences import DivergenceSpec, divergence


def _rows(obj, start: int, end: int):
    return replace(obj, **{f.name: getattr(obj, f.name)[start:end] for f in fields(obj)
                           if getattr(obj, f.name) is not None})


def _take(obj, index: Tensor):
    return replace(obj, **{f.name: getattr(obj, f.name)[index] for f in fields(obj)
                           if getattr(obj, f.name) is not None})


@dataclass(frozen=True)
class TopKTeacher:
    """Top-k next-token log-probabilities per position, plus the log of the mass outside them.

    ``ids`` (..., k) distinct token ids; ``logprobs`` (..., k) teacher log-probabilities of those tokens
    (normalised over the whole vocabulary, not over the k); ``tail_logprob`` (...) log(1 − Σ exp(logprobs)),
    computed from ``logprobs`` when None.
    """

    ids: Tensor
    logprobs: Tensor
    tail_logprob: Tensor | None = None

    def check(self, positions: tuple[int, ...], vocab: int) -> None:
        """Explain shape or content mistakes before any arithmetic."""
        if self.ids.shape[:-1] != positions:
            raise ValueError(f"topk_ids has shape {tuple(self.ids.shape)}; expected {positions} + (k,), "
                             "one row per student position")
        if self.ids.shape[-1] >= vocab:
            raise ValueError(f"k={self.ids.shape[-1]} covers the whole vocabulary ({vocab}); pass the full "
                             "teacher logits to token_divergence instead")
        if self.ids.shape != self.logprobs.shape:
            raise ValueError(f"topk_ids {tuple(self.ids.shape)} and topk_logprobs "
                             f"{tuple(self.logprobs.shape)} must have the same shape (..., k)")
        if self.tail_logprob is not None and self.tail_logprob.shape != self.ids.shape[:-1]:
            raise ValueError(f"tail_logprob has shape {tuple(self.tail_logprob.shape)}; expected "
                             f"{tuple(self.ids.shape[:-1])}, one value per position")
        # The slack admits rounding of half-precision caches; raw logits overshoot by far more.
        if self.logprobs.numel() and float(self.logprobs.detach().float().exp().sum(-1).max()) > 1.02:
            raise ValueError("topk_logprobs sum to more than probability 1 at some position: pass the "
                             "teacher's log-probabilities (log_softmax), not raw logits")

    def flat(self, n: int) -> "TopKTeacher":
        tail = None if self.tail_logprob is None else self.tail_logprob.reshape(n)
        return TopKTeacher(self.ids.reshape(n, -1), self.logprobs.reshape(n, -1), tail)

    def rows(self, start: int, end: int) -> "TopKTeacher":
        return _rows(self, start, end)

    def take(self, index: Tensor) -> "TopKTeacher":
        return _take(self, index)

    def buckets(self) -> Tensor:
        """Teacher log-probabilities over the k tokens and the tail bucket, (..., k + 1)."""
        tail = self.tail_logprob
        if tail is None:
            tail = torch.log1p(-self.logprobs.exp().sum(-1).clamp(max=1.0))
        return torch.cat([self.logprobs, tail.unsqueeze(-1).to(self.logprobs.dtype)], dim=-1)


@dataclass(frozen=True)
class SampledTeacher:
    """Tokens sampled from a proposal distribution with importance weights (Sparse Logit Sampling).

    ``ids`` (..., n) sampled token ids (repeats allowed); ``logprobs`` (..., n) the teacher's log-probability
    of each; ``weights`` (..., n) importance weights p(x)/(n·proposal(x)), so Σ weights·f(x) is an unbiased
    estimate of E_p[f]. Zero weights pad positions with fewer samples.
    """

    ids: Tensor
    logprobs: Tensor
    weights: Tensor

    def check(self, positions: tuple[int, ...]) -> None:
        """Explain shape mistakes before any arithmetic."""
        same = self.ids.shape == self.logprobs.shape == self.weights.shape
        if not same or self.ids.shape[:-1] != positions:
            raise ValueError(f"sampled ids {tuple(self.ids.shape)}, logprobs {tuple(self.logprobs.shape)} "
                             f"and weights {tuple(self.weights.shape)} must all be {positions} + (n,), n "
                             "samples per student position")

    def flat(self, n: int) -> "SampledTeacher":
        return SampledTeacher(*(x.reshape(n, -1) for x in (self.ids, self.logprobs, self.weights)))

    def rows(self, start: int, end: int) -> "SampledTeacher":
        return _rows(self, start, end)

    def take(self, index: Tensor) -> "SampledTeacher":
        return _take(self, index)


@dataclass(frozen=True)
class ProjectedTeacher:
    """Teacher logits made a chunk at a time from its final hidden states (N, H) and head weight (V, H)."""

    hidden: Tensor
    weight: Tensor
    bias: Tensor | None = None

    def __call__(self, start: int, end: int) -> Tensor:
        with torch.no_grad():
            return torch.nn.functional.linear(self.hidden[start:end], self.weight, self.bias)


Teacher = Union[Tensor, TopKTeacher, SampledTeacher, Callable[[int, int], Tensor]]


def topk_from_logits(logits: Tensor, k: int, *, temperature: float = 1.0) -> TopKTeacher:
    """The top-k form of full teacher logits at ``temperature``, with the exact tail mass."""
    logp = torch.log_softmax(logits.detach().double() / temperature, dim=-1)
    top, ids = logp.topk(k, dim=-1)
    tail = logp.scatter(-1, ids, -math.inf).logsumexp(-1)
    return TopKTeacher(ids, top.to(logits.dtype), tail.to(logits.dtype))


def sample_from_logits(
    logits: Tensor,
    num_samples: int,
    *,
    temperature: float = 1.0,
    proposal_temperature: float | None = None,
    generator: torch.Generator | None = None,
) -> SampledTeacher:
    """Draw ``num_samples`` tokens per position for Sparse Logit Sampling.

    The target is the teacher at ``temperature``; tokens are drawn with replacement from the teacher at
    ``proposal_temperature`` (default: the same, giving weights 1/n). A flatter proposal (higher temperature)
    visits more of the tail; the importance weights keep the estimate unbiased either way.
    """
    if num_samples <= 0:
        raise ValueError(f"num_samples={num_samples}: draw at least one token per position")
    flat = logits.detach().reshape(-1, logits.shape[-1]).double()
    logp = torch.log_softmax(flat / temperature, dim=-1)
    logq = logp if proposal_temperature is None else torch.log_softmax(flat / proposal_temperature, dim=-1)
    ids = torch.multinomial(logq.exp(), num_samples, replacement=True, generator=generator)
    lp = logp.gather(-1, ids)
    weights = (lp - logq.gather(-1, ids)).exp() / num_samples
    shape = (*logits.shape[:-1], num_samples)
    return SampledTeacher(ids.reshape(shape), lp.to(logits.dtype).reshape(shape),
                          weights.to(logits.dtype).reshape(shape))


def _tempered_log_softmax(logits: Tensor, temperature: float, dtype: torch.dtype) -> Tensor:
    # Dividing by 1 would still copy a (rows, V) tensor.
    scaled = logits if temperature == 1 else logits / temperature
    return torch.log_softmax(scaled, dim=-1, dtype=dtype)


def row_divergence(student_logits: Tensor, teacher, spec: DivergenceSpec) -> Tensor:
    """Per-row divergence (c,) of student logits (c, V) from one chunk of any teacher form."""
    dtype = torch.promote_types(student_logits.dtype, torch.float32)
    student_logp = _tempered_log_softmax(student_logits, spec.temperature, dtype)
    if isinstance(teacher, Tensor):
        teacher_logp = _tempered_log_softmax(teacher.detach(), spec.temperature, dtype)
        return divergence(spec.kind, student_logp, teacher_logp, beta=spec.beta, alpha=spec.alpha)
    if isinstance(teacher, TopKTeacher):
        ids = teacher.ids.long()  # caches store ids as int32/uint16; gather needs int64
        student_top = student_logp.gather(-1, ids)
        student_tail = student_logp.scatter(-1, ids, -math.inf).logsumexp(-1, keepdim=True)
        return divergence(spec.kind, torch.cat([student_top, student_tail], dim=-1),
                          teacher.buckets().detach().to(dtype), beta=spec.beta, alpha=spec.alpha)
    if isinstance(teacher, SampledTeacher):
        if spec.kind != "forward_kl":
            raise ValueError(f"kind={spec.kind!r} with a SampledTeacher: only forward_kl is linear in the "
                             "teacher distribution, so only it has an unbiased sampled estimate; use "
                             "kind='forward_kl' or a TopKTeacher")
        gap = teacher.logprobs.detach().to(dtype) - student_logp.gather(-1, teacher.ids.long())
        return (teacher.weights.detach().to(dtype) * gap).sum(-1)
    raise TypeError(f"teacher of type {type(teacher).__name__} is not a teacher chunk; pass logits, a "
                    "TopKTeacher or a SampledTeacher")
