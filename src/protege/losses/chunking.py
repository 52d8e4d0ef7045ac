"""Sum a row-wise loss chunk by chunk with gradients computed in the forward pass.

Autograd would keep every chunk's intermediates (log-softmaxes, mixtures, …) until backward, so chunking a
plain loop saves nothing. Slicing a tensor per chunk and letting autograd accumulate is no better: each
slice's backward allocates a zero tensor the size of the whole input. Instead, each chunk is differentiated as
soon as it is computed, its gradient written into one buffer per input, and its intermediates freed. Extra
peak memory is one chunk's intermediates plus the gradient buffers, which autograd would allocate anyway.

The result supports one backward (not double backward) and always computes input gradients when any input
requires them, since the forward cannot know whether backward will be called.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

# row_sum(start, end, row_chunks, shared) -> scalar sum of the loss of rows [start, end).
RowSum = Callable[[int, int, Sequence[Tensor], Sequence[Tensor]], Tensor]


class _ChunkedSum(torch.autograd.Function):
    @staticmethod
    def forward(ctx, row_sum: RowSum, n_rows: int, chunk_size: int, n_row_inputs: int, *inputs: Tensor) -> Tensor:
        needs = ctx.needs_input_grad[4:]
        rows, shared = inputs[:n_row_inputs], inputs[n_row_inputs:]
        grads = [torch.zeros_like(x) if need else None for x, need in zip(inputs, needs)]
        shared_leaves = [x.detach().requires_grad_(need) for x, need in zip(shared, needs[n_row_inputs:])]
        total = torch.zeros((), dtype=torch.float64, device=inputs[0].device)
        for start in range(0, n_rows, chunk_size):
            end = min(start + chunk_size, n_rows)
            row_leaves = [x[start:end].detach().requires_grad_(need) for x, need in zip(rows, needs)]
            with torch.enable_grad():
                loss = row_sum(start, end, row_leaves, shared_leaves)
            leaves = row_leaves + shared_leaves
            wanted = [i for i, need in enumerate(needs) if need]
            if wanted and loss.requires_grad:
                chunk_grads = torch.autograd.grad(loss, [leaves[i] for i in wanted], allow_unused=True)
                for i, g in zip(wanted, chunk_grads):
                    if g is None:
                        continue
                    if i < n_row_inputs:
                        grads[i][start:end] = g
                    else:
                        grads[i] += g
            total += loss.detach().to(torch.float64)
        ctx.grads = grads
        return total.to(torch.promote_types(inputs[0].dtype, torch.float32))

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor):
        grads = [None if g is None else g.mul_(grad_out.to(g.dtype)) for g in ctx.grads]
        ctx.grads = None
        return (None, None, None, None, *grads)


def chunked_sum(
    row_sum: RowSum, rows: Sequence[Tensor], shared: Sequence[Tensor], n_rows: int, chunk_size: int | None
) -> Tensor:
    """Σ over row chunks of ``row_sum``; ``rows`` are sliced along dim 0 per chunk, ``shared`` passed whole.

    ``chunk_size=None`` runs one plain autograd pass over all rows (the reference form).
    """
    if chunk_size is None:
        return row_sum(0, n_rows, rows, shared)
    if chunk_size <= 0:
        raise ValueError(f"chunk_size={chunk_size}: pass a positive number of positions per chunk, or None")
    if not torch.is_grad_enabled() or not any(x.requires_grad for x in (*rows, *shared)):
        with torch.no_grad():
            total = sum(
                row_sum(s, min(s + chunk_size, n_rows), [x[s : s + chunk_size] for x in rows], shared)
                for s in range(0, n_rows, chunk_size)
            )
        return torch.as_tensor(total, device=rows[0].device)
    return _ChunkedSum.apply(row_sum, n_rows, chunk_size, len(rows), *rows, *shared)
