"""Token-level distillation losses: one divergence per position, reduced over unmasked positions.

Every entry point shares one path: flatten positions, walk them in chunks (or in one piece when
``chunk_size`` is None), keep the unmasked rows, hand each chunk to :func:`row_divergence`, and divide the sum
by the global token count (see :mod:`protege.losses.reduction`). The teacher never receives a gradient.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor

from protege.losses.chunking import chunked_head_sum, chunked_rows_sum
from protege.losses.divergences import DivergenceSpec
from protege.losses.reduction import as_mask, reduce_sum
from protege.losses.teachers import SampledTeacher, Teacher, TopKTeacher, row_divergence


def _teacher_chunks(teacher: Teacher, positions: tuple[int, ...], vocab: int) -> Callable[[int, int], object]:
    n = math.prod(positions)
    if isinstance(teacher, Tensor):
        if teacher.shape != (*positions, vocab):
            raise ValueError(
                f"teacher logits have shape {tuple(teacher.shape)} but the student's are "
                f"{(*positions, vocab)}; token-level KD needs the same positions and the same vocabulary "
                "(compare the tokenizers: padded vocabularies of one family differ in size)")
        flat = teacher.reshape(n, vocab)
        return lambda start, end: flat[start:end]
    if isinstance(teacher, TopKTeacher):
        teacher.check(positions, vocab)
        return teacher.flat(n).rows
    if isinstance(teacher, SampledTeacher):
        teacher.check(positions)
        return teacher.flat(n).rows
    if callable(teacher):
        return teacher
    raise TypeError(f"teacher of type {type(teacher).__name__}: pass logits (N, V), a TopKTeacher, a "
                    "SampledTeacher, or a callable (start, end) -> logits")


def _select(chunk, index: Tensor):
    return chunk[index] if isinstance(chunk, Tensor) else chunk.take(index)


def _spec(kind: str, temperature: float, beta: float, alpha: float) -> DivergenceSpec:
    return DivergenceSpec(kind=kind, temperature=temperature, beta=beta, alpha=alpha)


def _divergence_from_logits(
    student_logits: Tensor, teacher: Teacher, mask: Tensor, spec: DivergenceSpec,
    num_tokens: int | Tensor | None, chunk_size: int | None,
) -> Tensor:
    positions, vocab = tuple(student_logits.shape[:-1]), student_logits.shape[-1]
    keep = as_mask(mask, torch.Size(positions)).reshape(-1)
    chunks = _teacher_chunks(teacher, positions, vocab)

    def rows_loss(start: int, end: int, rows: Tensor) -> Tensor:
        sel = keep[start:end]
        return row_divergence(rows[sel], _select(chunks(start, end), sel), spec).sum()

    total = chunked_rows_sum(rows_loss, student_logits.reshape(-1, vocab), chunk_size)
    return reduce_sum(total, keep, num_tokens)


def token_divergence(
    student_logits: Tensor,
    teacher_logits: Tensor,
    mask: Tensor,
    *,
    kind: str,
    temperature: float = 1.0,
    beta: float = 0.5,
    alpha: float = 0.1,
    num_tokens: int | Tensor | None = None,
    chunk_size: int | None = None,
) -> Tensor:
    """Mean divergence of the student's next-token distributions from the teacher's over unmasked positions.

    ``student_logits`` and ``teacher_logits`` are (..., V) logits; both are divided by ``temperature`` and
    softmaxed. ``mask`` (...) is True/1 where the loss applies (completion tokens), False/0 for prompt and
    padding. Returns Σ_unmasked divergence / ``num_tokens``, where ``num_tokens`` is the *global* count of
    unmasked tokens of the optimizer step (all micro-batches, all processes) or, when None, this call's
    count. ``chunk_size`` positions at a time bounds the extra memory to O(chunk_size × V); values and
    gradients equal the unchunked ones. No T² factor is applied; ``kind``, ``beta`` and ``alpha`` are
    described in :mod:`protege.losses.divergences`.
    """
    spec = _spec(kind, temperature, beta, alpha)
    return _divergence_from_logits(student_logits, teacher_logits, mask, spec, num_tokens, chunk_size)


def topk_divergence(
    student_logits: Tensor,
    topk_ids: Tensor,
    topk_logprobs: Tensor,
    mask: Tensor,
    *,
    tail_logprob: Tensor | None = None,
    kind: str = "forward_kl",
    temperature: float = 1.0,
    beta: float = 0.5,
    alpha: float = 0.1,
    num_tokens: int | Tensor | None = None,
    chunk_size: int | None = None,
) -> Tensor:
    """:func:`token_divergence` against a teacher known only by its top-k log-probabilities.

    Both distributions are coarse-grained to k + 1 buckets, the teacher's k tokens and "everything else", and
    the divergence is taken between those bucket distributions: exact for what the teacher revealed, never
    larger than the full-vocabulary divergence, and zero only when the student matches the teacher's top-k
    probabilities and tail mass. ``tail_logprob`` (...) defaults to log(1 − Σ exp(topk_logprobs)).
    ``temperature`` divides the student's logits; the teacher's log-probabilities must already be at that
    temperature (see :mod:`protege.losses.teachers`). Renormalising the top-k instead (tail mass −inf) is
    the biased form most tools use; the bias is measured in the tests and docs.
    """
    spec = _spec(kind, temperature, beta, alpha)
    teacher = TopKTeacher(topk_ids, topk_logprobs, tail_logprob)
    return _divergence_from_logits(student_logits, teacher, mask, spec, num_tokens, chunk_size)


def sampled_logit_kl(
    student_logits: Tensor,
    teacher: SampledTeacher,
    mask: Tensor,
    *,
    temperature: float = 1.0,
    num_tokens: int | Tensor | None = None,
    chunk_size: int | None = None,
) -> Tensor:
    """Unbiased estimate of KL(p‖q) from importance-sampled teacher tokens (Sparse Logit Sampling).

    Per position Σ_j w_j (log p(x_j) − log q(x_j)) with q the student's full softmax at ``temperature``; its
    expectation over the draws is the exact KL(p‖q) and its gradient the exact gradient. Build the teacher
    with :func:`sample_from_logits` (or cache its three tensors).
    """
    spec = _spec("forward_kl", temperature, 0.5, 0.1)
    return _divergence_from_logits(student_logits, teacher, mask, spec, num_tokens, chunk_size)


def head_divergence(
    hidden: Tensor,
    weight: Tensor,
    teacher: Teacher,
    mask: Tensor | None = None,
    *,
    bias: Tensor | None = None,
    kind: str = "forward_kl",
    temperature: float = 1.0,
    beta: float = 0.5,
    alpha: float = 0.1,
    num_tokens: int | Tensor | None = None,
    chunk_size: int | None = 256,
) -> Tensor:
    """:func:`token_divergence` from the student's final hidden states, never materialising all its logits.

    ``hidden`` (N, H) are the student's final hidden states at the N positions to distil (select completion
    positions first); ``weight`` (V, H) and optional ``bias`` (V,) its output projection. Logits are made
    ``chunk_size`` rows at a time and differentiated at once, so extra peak memory is O(chunk_size × V) plus
    the gradients of ``hidden`` and ``weight``. ``teacher`` is teacher logits (N, V), a callable
    ``(start, end) -> logits`` such as :class:`ProjectedTeacher` (teacher logits made per chunk too), a
    :class:`TopKTeacher` or a :class:`SampledTeacher` (forward KL only). ``mask`` (N,) defaults to all True.
    ``chunk_size=None`` projects everything at once with plain autograd (the reference form).
    """
    if hidden.dim() != 2 or weight.dim() != 2 or hidden.shape[1] != weight.shape[1]:
        raise ValueError(f"hidden {tuple(hidden.shape)} and weight {tuple(weight.shape)} must be (N, H) and "
                         "(V, H) with the same H; flatten positions and select the ones to distil first")
    spec = _spec(kind, temperature, beta, alpha)
    n, vocab = hidden.shape[0], weight.shape[0]
    if mask is None:
        keep = torch.ones(n, dtype=torch.bool, device=hidden.device)
    else:
        keep = as_mask(mask, hidden.shape[:1])
    chunks = _teacher_chunks(teacher, (n,), vocab)

    def head_loss(start: int, end: int, sel: Tensor, logits: Tensor) -> Tensor:
        return row_divergence(logits, _select(chunks(start, end), sel), spec).sum()

    total = chunked_head_sum(head_loss, hidden, weight, bias, keep, chunk_size)
    return reduce_sum(total, keep, num_tokens)
