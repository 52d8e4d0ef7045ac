"""Sum a row-wise loss chunk by chunk with gradients computed in the forward pass.

Autograd would keep every chunk's intermediates (log-softmaxes, mixtures, …) until backward, so chunking a
plain loop saves nothing. Slicing a tensor per chunk and letting autograd accumulate is no better: each
slice's backward allocates a zero tensor the size of the whole input. Instead, each chunk is differentiated as
soon as it is computed, its gradient written into one buffer per input, and its intermediates freed. Extra
peak memory is one chunk's intermediates plus the gradient buffers, which autograd would allocate anyway.

Two forms: :func:`chunked_rows_sum` differentiates with respect to the rows themselves (logits), and
:func:`chunked_head_sum` with respect to the hidden states and output projection that make the logits, so the
(N, V) logits never exist. Both support one backward (not double backward) and compute input gradients in
the forward whenever any input requires them, since the forward cannot know whether backward will follow.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

# rows_loss(start, end, rows) -> scalar: the summed loss of rows [start, end), given those rows.
RowsLoss = Callable[[int, int, Tensor], Tensor]
# head_loss(start, end, sel, logits) -> scalar: the summed loss of rows [start, end)[sel], given their logits.
HeadLoss = Callable[[int, int, Tensor, Tensor], Tensor]


def _result_dtype(x: Tensor) -> torch.dtype:
    return torch.promote_types(x.dtype, torch.float32)


def _check_chunk_size(chunk_size: int) -> None:
    if chunk_size <= 0:
        raise ValueError(f"chunk_size={chunk_size}: pass a positive number of positions per chunk, or None")


class _ChunkedRows(torch.autograd.Function):
    @staticmethod
    def forward(ctx, rows_loss: RowsLoss, chunk_size: int, x: Tensor) -> Tensor:
        grad = torch.zeros_like(x)
        total = torch.zeros((), dtype=torch.float64, device=x.device)
        for start in range(0, x.shape[0], chunk_size):
            end = min(start + chunk_size, x.shape[0])
            leaf = x[start:end].detach().requires_grad_()
            with torch.enable_grad():
                loss = rows_loss(start, end, leaf)
            if loss.requires_grad:
                grad[start:end] = torch.autograd.grad(loss, leaf)[0]
            total += loss.detach().double()
        ctx.grads = (grad,)
        return total.to(_result_dtype(x))

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor):
        (grad,) = ctx.grads
        ctx.grads = None
        return None, None, grad.mul_(grad_out.to(grad.dtype))


class _ChunkedHead(torch.autograd.Function):
    @staticmethod
    def forward(ctx, head_loss: HeadLoss, chunk_size: int, keep: Tensor, hidden: Tensor, weight: Tensor,
                bias: Tensor | None) -> Tensor:
        need_hidden, need_weight, need_bias = ctx.needs_input_grad[3:6]
        grad_hidden = torch.zeros_like(hidden) if need_hidden else None
        # The head's gradient accumulates in place (addmm_), never as a fresh (V, H) tensor per chunk.
        grad_weight = torch.zeros_like(weight) if need_weight else None
        grad_bias = torch.zeros_like(bias) if need_bias else None
        total = torch.zeros((), dtype=torch.float64, device=hidden.device)
        for start in range(0, hidden.shape[0], chunk_size):
            end = min(start + chunk_size, hidden.shape[0])
            sel = keep[start:end]
            h = hidden[start:end][sel]
            logits = torch.nn.functional.linear(h, weight, bias).requires_grad_()
            with torch.enable_grad():
                loss = head_loss(start, end, sel, logits)
            total += loss.detach().double()
            if not loss.requires_grad or h.shape[0] == 0:
                continue
            (d_logits,) = torch.autograd.grad(loss, logits)
            # Under autocast the logits (and so d_logits) may be half precision while the buffers follow the
            # inputs; accumulate in the buffers' dtype, outside autocast so it cannot downcast again.
            with torch.autocast(hidden.device.type, enabled=False):
                if grad_hidden is not None:
                    grad_hidden[start:end][sel] = (d_logits.to(weight.dtype) @ weight).to(hidden.dtype)
                if grad_weight is not None:
                    grad_weight.addmm_(d_logits.T.to(weight.dtype), h.to(weight.dtype))
                if grad_bias is not None:
                    grad_bias += d_logits.sum(0).to(bias.dtype)
        ctx.grads = (grad_hidden, grad_weight, grad_bias)
        return total.to(_result_dtype(hidden))

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor):
        grads = [None if g is None else g.mul_(grad_out.to(g.dtype)) for g in ctx.grads]
        ctx.grads = None
        return (None, None, None, *grads)


def chunked_rows_sum(rows_loss: RowsLoss, x: Tensor, chunk_size: int | None) -> Tensor:
    """Σ of ``rows_loss`` over chunks of ``chunk_size`` rows; ``None`` = one plain autograd pass."""
    if chunk_size is None:
        return rows_loss(0, x.shape[0], x)
    _check_chunk_size(chunk_size)
    if torch.is_grad_enabled() and x.requires_grad:
        return _ChunkedRows.apply(rows_loss, chunk_size, x)
    with torch.no_grad():
        total = sum((rows_loss(s, min(s + chunk_size, x.shape[0]), x[s : s + chunk_size]).double()
                     for s in range(0, x.shape[0], chunk_size)), torch.zeros((), dtype=torch.float64))
    return total.to(_result_dtype(x))


def chunked_head_sum(head_loss: HeadLoss, hidden: Tensor, weight: Tensor, bias: Tensor | None, keep: Tensor,
                     chunk_size: int | None) -> Tensor:
    """Σ of ``head_loss`` over the kept rows, their logits made from ``hidden @ weight.T + bias`` per chunk.

    ``chunk_size=None`` projects all kept rows at once with plain autograd (the reference form).
    """
    if chunk_size is None:
        n = hidden.shape[0]
        return head_loss(0, n, keep, torch.nn.functional.linear(hidden[keep], weight, bias))
    _check_chunk_size(chunk_size)
    inputs = [t for t in (hidden, weight, bias) if t is not None]
    if torch.is_grad_enabled() and any(t.requires_grad for t in inputs):
        return _ChunkedHead.apply(head_loss, chunk_size, keep, hidden, weight, bias)
    with torch.no_grad():
        total = torch.zeros((), dtype=torch.float64, device=hidden.device)
        for s in range(0, hidden.shape[0], chunk_size):
            e = min(s + chunk_size, hidden.shape[0])
            sel = keep[s:e]
            total += head_loss(s, e, sel, torch.nn.functional.linear(hidden[s:e][sel], weight, bias)).double()
    return total.to(_result_dtype(hidden))
