"""Sparse teachers: top-k with a tail bucket is exact on its buckets; renormalised top-k is biased;
importance-sampled sparse logits are unbiased in value and gradient."""

from __future__ import annotations

import math

import pytest
import torch

from protege.losses import (
    KINDS,
    SampledTeacher,
    divergence,
    head_divergence,
    sample_from_logits,
    sampled_logit_kl,
    token_divergence,
    topk_divergence,
    topk_from_logits,
)


def logits(seed: int, n: int, vocab: int, scale: float = 2.0) -> torch.Tensor:
    return torch.randn(n, vocab, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * scale


def all_rows(n: int) -> torch.Tensor:
    return torch.ones(n, dtype=torch.bool)


@pytest.mark.parametrize("kind", KINDS)
def test_topk_with_tail_is_the_divergence_between_bucketed_distributions(kind: str) -> None:
    s, t, k = logits(0, 4, 10), logits(1, 4, 10), 3
    p, q = torch.softmax(t, -1), torch.softmax(s, -1)
    top = p.topk(k, -1).indices
    tail = torch.ones_like(p, dtype=torch.bool).scatter(-1, top, False)
    p_buckets = torch.cat([p.gather(-1, top), (p * tail).sum(-1, keepdim=True)], -1)
    q_buckets = torch.cat([q.gather(-1, top), (q * tail).sum(-1, keepdim=True)], -1)
    expected = divergence(kind, q_buckets.log(), p_buckets.log()).mean()
    sparse = topk_from_logits(t, k)
    got = topk_divergence(s, sparse.ids, sparse.logprobs, all_rows(4), kind=kind)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-14)
    # The tail computed from the top-k log-probabilities equals the exact one passed explicitly.
    explicit = topk_divergence(s, sparse.ids, sparse.logprobs, all_rows(4), tail_logprob=sparse.tail_logprob,
                               kind=kind)
    torch.testing.assert_close(got, explicit, rtol=1e-9, atol=1e-14)
    # Compact id dtypes from caches are accepted.
    compact = topk_divergence(s, sparse.ids.int(), sparse.logprobs, all_rows(4), kind=kind)
    assert torch.equal(compact, got)
    # Coarse-graining never increases an f-divergence (data-processing inequality).
    assert got <= token_divergence(s, t, all_rows(4), kind=kind) + 1e-12


def test_topk_tail_form_is_zero_at_the_teacher_and_renormalised_topk_is_not() -> None:
    """At q = p the exact gradient is 0. Renormalising the teacher's top-k asks the student to give the tail
    zero mass: a non-zero loss and a gradient pushing mass onto the top-k (overconfidence)."""
    t, k = logits(2, 6, 12), 4
    s = t.clone().requires_grad_()
    sparse = topk_from_logits(t, k)
    tail_form = topk_divergence(s, sparse.ids, sparse.logprobs, all_rows(6))
    (g_tail,) = torch.autograd.grad(tail_form, s)
    assert abs(tail_form.item()) < 1e-12 and g_tail.abs().max() < 1e-12
    renormalised = sparse.logprobs - sparse.logprobs.logsumexp(-1, keepdim=True)
    no_tail = torch.full((6,), -math.inf, dtype=t.dtype)
    biased = topk_divergence(s, sparse.ids, renormalised, all_rows(6), tail_logprob=no_tail)
    (g_biased,) = torch.autograd.grad(biased, s)
    tail_mass = sparse.tail_logprob.exp()
    torch.testing.assert_close(biased, -torch.log1p(-tail_mass).mean(), rtol=1e-10, atol=0)
    assert torch.all(g_biased.gather(-1, sparse.ids) < 0)  # descent raises every top-k logit


def expected_gradient(s: torch.Tensor, t: torch.Tensor, estimate) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean over R independent draws (R rows holding the same position) of the estimator's gradient."""
    leaf = s.clone().requires_grad_()
    value = estimate(leaf)
    (grad,) = torch.autograd.grad(value, leaf)
    return value.detach(), grad.sum(0)


@pytest.mark.parametrize("proposal_temperature", [None, 2.0])
def test_sampled_logits_are_unbiased_and_renormalised_topk_is_not(proposal_temperature) -> None:
    vocab, repeats, draws = 8, 20_000, 3
    t_row, s_row = logits(3, 1, vocab), logits(4, 1, vocab, scale=1.0)
    t, s = t_row.expand(repeats, vocab), s_row.expand(repeats, vocab)
    rows = all_rows(repeats)
    exact, exact_grad = expected_gradient(s, t, lambda x: token_divergence(x, t, rows, kind="forward_kl"))

    teacher = sample_from_logits(t, draws, proposal_temperature=proposal_temperature,
                                 generator=torch.Generator().manual_seed(7))
    sampled, sampled_grad = expected_gradient(s, t, lambda x: sampled_logit_kl(x, teacher, rows))
    # Standard error of the mean from the spread of per-row gradients.
    leaf = s.clone().requires_grad_()
    (rows_grad,) = torch.autograd.grad(sampled_logit_kl(leaf, teacher, rows, num_tokens=1), leaf)
    stderr = rows_grad.std(0) / math.sqrt(repeats)
    assert torch.all((sampled_grad - exact_grad).abs() <= 5 * stderr + 1e-12)
    value_rows = torch.stack([sampled_logit_kl(s[i:i + 1], SampledTeacher(teacher.ids[i:i + 1],
                              teacher.logprobs[i:i + 1], teacher.weights[i:i + 1]), rows[:1])
                              for i in range(0, repeats, 50)])
    assert abs(sampled - exact) <= 5 * value_rows.std() / math.sqrt(repeats) + 1e-12

    top = topk_from_logits(t, draws)
    renormalised = top.logprobs - top.logprobs.logsumexp(-1, keepdim=True)
    _, biased_grad = expected_gradient(s, t, lambda x: topk_divergence(
        x, top.ids, renormalised, rows, tail_logprob=torch.full((repeats,), -math.inf)))
    assert (biased_grad - exact_grad).abs().max() > 20 * stderr.max()


def test_sampled_teacher_refuses_non_linear_divergences() -> None:
    t = logits(5, 2, 6)
    teacher = sample_from_logits(t, 4, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="samples per"):
        sampled_logit_kl(logits(6, 3, 6), teacher, all_rows(3))
    with pytest.raises(ValueError, match="unbiased"):
        head_divergence(torch.eye(2, 6, dtype=torch.float64), torch.eye(6, dtype=torch.float64), teacher,
                        kind="jsd")


def test_topk_arguments_explain_mistakes() -> None:
    s, t = logits(6, 3, 9), logits(7, 3, 9)
    top = topk_from_logits(t, 3)
    with pytest.raises(ValueError, match="raw logits"):
        topk_divergence(s, top.ids, t.gather(-1, top.ids) + 5, all_rows(3))
    with pytest.raises(ValueError, match="whole vocabulary"):
        full = topk_from_logits(t, 9)
        topk_divergence(s, full.ids, full.logprobs, all_rows(3))
    with pytest.raises(ValueError, match="same shape"):
        topk_divergence(s, top.ids, top.logprobs[:, :2], all_rows(3))
