"""Masking, global-count reduction, micro-batch invariance and chunked-vs-plain agreement of token losses."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from protege.losses import (
    KINDS,
    ProjectedTeacher,
    count_tokens,
    head_divergence,
    sample_from_logits,
    sampled_logit_kl,
    token_divergence,
    topk_divergence,
    topk_from_logits,
)

V = 13


def batch(seed: int, b: int = 3, length: int = 5, vocab: int = V):
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(b, length, vocab, generator=g, dtype=torch.float64) * 2
    t = torch.randn(b, length, vocab, generator=g, dtype=torch.float64) * 2
    mask = torch.rand(b, length, generator=g) > 0.35
    mask[0, 0] = True
    return s, t, mask


def value_and_grad(fn, *inputs: torch.Tensor):
    leaves = [x.detach().clone().requires_grad_() for x in inputs]
    value = fn(*leaves)
    return value.detach(), torch.autograd.grad(value, leaves)


@pytest.mark.parametrize("kind", KINDS)
def test_masked_positions_are_ignored_even_when_they_hold_garbage(kind: str) -> None:
    s, t, mask = batch(0)
    s_bad, t_bad = s.clone(), t.clone()
    s_bad[~mask] = math.nan
    t_bad[~mask] = math.inf
    clean, (g_clean,) = value_and_grad(lambda x: token_divergence(x, t, mask, kind=kind), s)
    dirty, (g_dirty,) = value_and_grad(lambda x: token_divergence(x, t_bad, mask, kind=kind), s_bad)
    assert torch.equal(clean, dirty)
    assert torch.equal(g_clean, g_dirty)
    assert torch.all(g_dirty[~mask] == 0)
    kept = token_divergence(s[mask], t[mask], torch.ones(int(mask.sum()), dtype=torch.bool), kind=kind)
    torch.testing.assert_close(clean, kept, rtol=1e-12, atol=0)


def test_reduction_is_sum_over_unmasked_divided_by_num_tokens() -> None:
    s, t, mask = batch(1)
    local = token_divergence(s, t, mask, kind="forward_kl")
    assert torch.equal(local, token_divergence(s, t, mask, kind="forward_kl", num_tokens=int(mask.sum())))
    quadruple = token_divergence(s, t, mask, kind="forward_kl", num_tokens=4 * int(mask.sum()))
    torch.testing.assert_close(quadruple, local / 4, rtol=1e-14, atol=0)
    as_tensor = token_divergence(s, t, mask, kind="forward_kl", num_tokens=torch.tensor(float(mask.sum())))
    torch.testing.assert_close(as_tensor, local, rtol=1e-14, atol=0)
    float_mask = token_divergence(s, t, mask.double(), kind="forward_kl")
    assert torch.equal(float_mask, local)


def test_empty_mask_gives_zero_not_nan_and_bad_arguments_explain() -> None:
    s, t, mask = batch(2)
    leaf = s.clone().requires_grad_()
    value = token_divergence(leaf, t, torch.zeros_like(mask), kind="jsd")
    value.backward()
    assert value.item() == 0 and torch.all(leaf.grad == 0)
    with pytest.raises(ValueError, match="num_tokens"):
        token_divergence(s, t, mask, kind="jsd", num_tokens=0)
    with pytest.raises(ValueError, match="mask"):
        token_divergence(s, t, mask[:, :-1], kind="jsd")
    with pytest.raises(ValueError, match="vocabular"):
        token_divergence(s, t[..., :-1], mask, kind="jsd")
    with pytest.raises(ValueError, match="0/1"):
        token_divergence(s, t, mask.double() * 0.5, kind="jsd")
    with pytest.raises(ValueError, match="chunk_size"):
        token_divergence(s, t, mask, kind="jsd", chunk_size=0)


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 10_000), st.sampled_from(KINDS), st.lists(st.integers(1, 3), min_size=1, max_size=4),
       st.sampled_from([None, 2]))
def test_same_gradient_however_the_batch_is_split(seed, kind, cuts, chunk_size) -> None:
    """Micro-batches given the global token count sum to the full-batch loss and gradient."""
    s, t, mask = batch(seed, b=6)
    full, (g_full,) = value_and_grad(lambda x: token_divergence(x, t, mask, kind=kind), s)
    bounds, start = [], 0
    for size in cuts:
        if start >= 6:
            break
        bounds.append((start, min(6, start + size)))
        start += size
    if start < 6:
        bounds.append((start, 6))
    total = count_tokens(mask[a:b] for a, b in bounds)
    leaf = s.clone().requires_grad_()
    summed = sum(token_divergence(leaf[a:b], t[a:b], mask[a:b], kind=kind, num_tokens=total,
                                  chunk_size=chunk_size) for a, b in bounds)
    summed.backward()
    torch.testing.assert_close(summed.detach(), full, rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(leaf.grad, g_full, rtol=1e-10, atol=1e-15)


def test_per_micro_batch_mean_would_differ() -> None:
    """The trap the global count avoids: averaging micro-batch means weights short micro-batches more."""
    s, t, mask = batch(3, b=4)
    mask[:2] = True
    mask[2:] = False
    mask[3, 0] = True
    full = token_divergence(s, t, mask, kind="forward_kl")
    naive = (token_divergence(s[:2], t[:2], mask[:2], kind="forward_kl")
             + token_divergence(s[2:], t[2:], mask[2:], kind="forward_kl")) / 2
    assert not torch.allclose(full, naive)


def topk_teacher_loss(k: int):
    def fn(s, t, mask, **kw):
        top = topk_from_logits(t, k, temperature=kw.get("temperature", 1.0))
        return topk_divergence(s, top.ids, top.logprobs, mask, tail_logprob=top.tail_logprob, **kw)
    return fn


def sampled_teacher_loss(s, t, mask, **kw):
    teacher = sample_from_logits(t, 6, generator=torch.Generator().manual_seed(5))
    return sampled_logit_kl(s, teacher, mask, **{k: v for k, v in kw.items() if k != "kind"})


# The sampled teacher estimates the forward KL only.
FORMS_AND_KINDS = [(form, kind) for form in ("dense", "topk") for kind in KINDS] + [("sampled", "forward_kl")]


@pytest.mark.parametrize(("form", "kind"), FORMS_AND_KINDS)
@pytest.mark.parametrize("chunk_size", [1, 4, 7, 100])
def test_chunked_equals_unchunked(form: str, kind: str, chunk_size: int) -> None:
    fn = {"dense": token_divergence, "topk": topk_teacher_loss(4), "sampled": sampled_teacher_loss}[form]
    s, t, mask = batch(4)
    plain, g_plain = value_and_grad(lambda x: fn(x, t, mask, kind=kind, temperature=1.3), s)
    chunked, g_chunked = value_and_grad(lambda x: fn(x, t, mask, kind=kind, temperature=1.3,
                                                     chunk_size=chunk_size), s)
    torch.testing.assert_close(chunked, plain, rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(g_chunked[0], g_plain[0], rtol=1e-10, atol=1e-15)
    with torch.no_grad():
        torch.testing.assert_close(fn(s, t, mask, kind=kind, temperature=1.3, chunk_size=chunk_size), plain,
                                   rtol=1e-12, atol=1e-15)


def test_chunked_backward_scales_with_the_outer_gradient() -> None:
    s, t, mask = batch(5)
    _, (g,) = value_and_grad(lambda x: token_divergence(x, t, mask, kind="jsd", chunk_size=3), s)
    _, (g3,) = value_and_grad(lambda x: 3.0 * token_divergence(x, t, mask, kind="jsd", chunk_size=3), s)
    torch.testing.assert_close(g3, 3 * g, rtol=1e-12, atol=0)


def head_inputs(seed: int, n: int = 11, h: int = 6, vocab: int = V):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(n, h, generator=g, dtype=torch.float64)
    weight = torch.randn(vocab, h, generator=g, dtype=torch.float64)
    bias = torch.randn(vocab, generator=g, dtype=torch.float64)
    t_hidden = torch.randn(n, h + 2, generator=g, dtype=torch.float64)
    t_weight = torch.randn(vocab, h + 2, generator=g, dtype=torch.float64)
    mask = torch.rand(n, generator=g) > 0.3
    return hidden, weight, bias, t_hidden, t_weight, mask


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("teacher_form", ["logits", "projected", "topk"])
def test_head_divergence_matches_the_plain_form_in_value_and_gradients(kind: str, teacher_form: str) -> None:
    hidden, weight, bias, t_hidden, t_weight, mask = head_inputs(6)
    t_logits = t_hidden @ t_weight.T
    teacher = {"logits": t_logits, "projected": ProjectedTeacher(t_hidden, t_weight),
               "topk": topk_from_logits(t_logits, 3, temperature=0.8)}[teacher_form]

    def plain(h, w, b):
        logits = h @ w.T + b
        if teacher_form == "topk":
            return topk_divergence(logits, teacher.ids, teacher.logprobs, mask,
                                   tail_logprob=teacher.tail_logprob, kind=kind, temperature=0.8)
        return token_divergence(logits, t_logits, mask, kind=kind, temperature=0.8)

    expected, g_expected = value_and_grad(plain, hidden, weight, bias)
    for chunk_size in (None, 1, 4, 64):
        got, g_got = value_and_grad(
            lambda h, w, b: head_divergence(h, w, teacher, mask, bias=b, kind=kind, temperature=0.8,
                                            chunk_size=chunk_size), hidden, weight, bias)
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-15)
        for a, e in zip(g_got, g_expected):
            torch.testing.assert_close(a, e, rtol=1e-10, atol=1e-14)


def test_head_divergence_with_frozen_weight_and_sampled_teacher() -> None:
    hidden, weight, _, t_hidden, t_weight, mask = head_inputs(7)
    teacher = sample_from_logits(t_hidden @ t_weight.T, 5, generator=torch.Generator().manual_seed(0))
    plain, (g_plain,) = value_and_grad(lambda h: sampled_logit_kl(h @ weight.T, teacher, mask), hidden)
    got, (g_got,) = value_and_grad(lambda h: head_divergence(h, weight, teacher, mask, chunk_size=3), hidden)
    torch.testing.assert_close(got, plain, rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(g_got, g_plain, rtol=1e-10, atol=1e-15)
    with pytest.raises(ValueError, match="forward_kl"):
        head_divergence(hidden, weight, teacher, mask, kind="reverse_kl")
    with pytest.raises(ValueError, match="\\(N, H\\)"):
        head_divergence(hidden, weight[:, :-1], teacher, mask)


def test_chunked_head_saves_no_logits_for_backward() -> None:
    """State autograd holds between forward and backward: (N, V) tensors for the plain form, none chunked."""
    hidden, weight, _, t_hidden, t_weight, mask = head_inputs(8, n=64, vocab=512)
    teacher = ProjectedTeacher(t_hidden, t_weight)

    def saved_bytes(chunk_size):
        sizes: list[int] = []

        def pack(x: torch.Tensor):
            sizes.append(x.numel() * x.element_size())
            return x

        h, w = hidden.clone().requires_grad_(), weight.clone().requires_grad_()
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda x: x):
            head_divergence(h, w, teacher, mask, kind="jsd", chunk_size=chunk_size)
        return max(sizes, default=0), sum(sizes)

    logits_bytes = int(mask.sum()) * 512 * 8
    largest_plain, _ = saved_bytes(None)
    largest_chunked, _ = saved_bytes(8)
    assert largest_plain >= logits_bytes
    assert largest_chunked <= 8 * 512 * 8


@pytest.mark.parametrize("kind", ["forward_kl", "jsd"])
def test_head_divergence_under_bfloat16_autocast_matches_the_plain_form(kind: str) -> None:
    hidden, weight, bias, t_hidden, t_weight, mask = head_inputs(9, n=40, h=16, vocab=50)
    hidden, weight, bias = hidden.float(), weight.float(), bias.float()
    teacher = (t_hidden @ t_weight.T).float()

    def run(chunk_size):
        leaves = [x.clone().requires_grad_() for x in (hidden, weight, bias)]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            value = head_divergence(*leaves[:2], teacher, mask, bias=leaves[2], kind=kind, chunk_size=chunk_size)
        value.backward()
        return value.detach(), [x.grad for x in leaves]

    expected, g_expected = run(None)
    got, g_got = run(16)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)  # same bf16 logits, float32 divergence
    for a, e in zip(g_got, g_expected):
        assert a.dtype == e.dtype == torch.float32
        assert (a - e).norm() <= 2e-2 * e.norm()  # bf16 rounding of the head's backward matmuls differs
