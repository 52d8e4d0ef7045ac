"""The one reduction every token loss uses: sum over unmasked positions divided by a *global* token count.

Why global: with gradient accumulation (or data parallelism) a step's loss is the mean over every unmasked
token the step sees. Dividing each micro-batch by its own count weights short micro-batches more and changes
the gradient with how the batch was split. A trainer therefore counts unmasked tokens over all micro-batches
of the step first (:func:`count_tokens`), sums that count across processes (``accelerator.reduce(count,
"sum")`` or ``torch.distributed.all_reduce``), passes it as ``num_tokens`` to every micro-batch, and sums the
micro-batch losses (``backward`` on each). Under DDP, which *averages* gradients over processes, multiply
each loss by the world size so the average becomes the sum.
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch import Tensor


def as_mask(mask: Tensor, shape: torch.Size, name: str = "mask") -> Tensor:
    """A boolean mask of ``shape`` (the logits' shape without the vocabulary); True = position counts."""
    if mask.shape != shape:
        raise ValueError(f"{name} has shape {tuple(mask.shape)} but the positions have shape {tuple(shape)}; "
                         f"pass one entry per position (True/1 where the loss applies)")
    if mask.dtype == torch.bool:
        return mask
    if mask.is_floating_point() and not torch.all((mask == 0) | (mask == 1)):
        raise ValueError(f"{name} must be boolean or 0/1; to weight tokens, scale the per-token loss instead")
    return mask != 0


def count_tokens(masks: Iterable[Tensor]) -> int:
    """Unmasked positions over all micro-batches of one optimizer step on this process."""
    return int(sum(int(m.bool().sum()) for m in masks))


def reduce_sum(total: Tensor, mask: Tensor, num_tokens: int | Tensor | None) -> Tensor:
    """``total / num_tokens``, or over the local unmasked count when ``num_tokens`` is None.

    A batch with no unmasked token gives 0 (with a graph), not NaN.
    """
    if num_tokens is None:
        return total / mask.sum().clamp_min(1).to(total.dtype)
    if isinstance(num_tokens, Tensor):
        return total / num_tokens.to(device=total.device, dtype=total.dtype)
    if num_tokens <= 0:
        raise ValueError(f"num_tokens={num_tokens}: pass the global count of unmasked tokens (> 0) or None")
    return total / num_tokens
