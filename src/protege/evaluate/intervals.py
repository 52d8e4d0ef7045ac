"""How sure a score is: 95 % intervals for a proportion and for the difference of two models on the same texts.

- :func:`wilson` — the Wilson score interval of ``successes`` out of ``n`` (an accuracy). Unlike the normal
  approximation it stays inside [0, 1] and is honest at small ``n`` and at 0 % or 100 %.
- :func:`paired_bootstrap` — the mean of ``a - b`` over paired per-example scores (1/0 correct, or any score)
  with a percentile bootstrap interval: the texts are resampled with replacement, and both models keep their
  answers on each resampled text, so the interval reflects the difference, not two independent noises.

Both are pure functions of numbers; a seed makes the bootstrap reproducible.
"""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Sequence

import numpy as np


def _z(confidence: float) -> float:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence={confidence}: must lie strictly between 0 and 1")
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def wilson(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval ``(lo, hi)`` of the proportion ``successes / n``; (0, 1) when ``n`` is 0."""
    if n < 0 or not 0 <= successes <= max(n, 0):
        raise ValueError(f"wilson: need 0 <= successes <= n, got {successes} of {n}")
    if n == 0:
        return 0.0, 1.0
    z = _z(confidence)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # At 0 or n successes one bound is exactly 0 or 1; say so instead of leaving a rounding residue.
    lo = 0.0 if successes == 0 else max(0.0, centre - half)
    hi = 1.0 if successes == n else min(1.0, centre + half)
    return lo, hi


def paired_bootstrap(a: Sequence[float], b: Sequence[float], *, resamples: int = 2000, confidence: float = 0.95,
                     seed: int = 0) -> tuple[float, tuple[float, float]]:
    """``(mean(a - b), (lo, hi))``: the mean paired difference and its percentile bootstrap interval."""
    x = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    if np.asarray(a).shape != np.asarray(b).shape or x.ndim != 1:
        raise ValueError(f"paired_bootstrap: a and b must be 1-D and paired, got {np.shape(a)} and {np.shape(b)}")
    if resamples < 1:
        raise ValueError(f"resamples={resamples}: need at least one")
    _z(confidence)
    if x.size == 0:
        return float("nan"), (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(resamples, x.size))].mean(axis=1)
    tail = (1 - confidence) / 2
    lo, hi = np.quantile(means, [tail, 1 - tail])
    return float(x.mean()), (float(lo), float(hi))
