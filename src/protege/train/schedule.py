"""Which examples and which learning rate each optimizer step of the training loop gets.

The loop owns the order: step ``s`` takes the next global batch of a seeded stream of example indices, so the
examples of a step depend only on the seed, the step and the global batch size — whatever the number of
processes or the accumulation split, which is what makes resume and gradient accumulation exact.
"""

from __future__ import annotations

import math
from typing import Any

import torch


def lr_factor(step: int, total: int, warmup: int, schedule: str) -> float:
    """Multiplier of the peak learning rate for optimizer step ``step`` (0-based) of ``total``."""
    if step < warmup:
        return (step + 1) / (warmup + 1)
    if schedule == "constant":
        return 1.0
    progress = (step - warmup) / max(1, total - warmup)
    if schedule == "linear":
        return max(0.0, 1.0 - progress)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def total_steps(config: Any, examples: int, world: int) -> int:
    if config.steps is not None:
        return config.steps
    per_step = config.micro_batch_size * config.grad_accum * world
    return max(1, math.ceil(config.epochs * examples / per_step))


class IndexStream:
    """Example indices in a fresh seeded permutation per epoch, read as one endless stream.

    Step ``s`` takes the next ``global_batch`` positions of the stream, so the examples of a step depend only on
    the seed, the step and the global batch size.
    """

    def __init__(self, size: int, seed: int):
        if size <= 0:
            raise ValueError("the batch source is empty: there is nothing to train on")
        self.size, self.seed = size, seed
        self._perms: dict[int, list[int]] = {}

    def _perm(self, epoch: int) -> list[int]:
        if epoch not in self._perms:
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._perms = {epoch: torch.randperm(self.size, generator=gen).tolist()}
        return self._perms[epoch]

    def step(self, step: int, global_batch: int) -> list[int]:
        start = step * global_batch
        return [self._perm(p // self.size)[p % self.size] for p in range(start, start + global_batch)]
