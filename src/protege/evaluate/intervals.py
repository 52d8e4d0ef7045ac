"""Uncertainty of rates and of differences between two systems scored on the same items.

* :func:`wilson`: the Wilson score interval of a binomial proportion. Unlike the normal ("Wald") interval it
  stays inside [0, 1] and does not collapse to a point at 0 or n successes, which matters for pass rates
  estimated from a handful of samples.
* :func:`bootstrap_metric`: a percentile bootstrap interval of any score of a set of items (macro-F1).
* :func:`gold_scores`: accuracy and macro-F1 of predicted labels against gold ones, each with its 95 % interval
  (Wilson for accuracy, the percentile bootstrap over items for macro-F1): how every classifier is reported.
* :func:`paired_bootstrap`: a percentile bootstrap interval of mean(a) − mean(b) where ``a[i]`` and ``b[i]``
  score the same item: items are resampled with replacement and both arrays take the same resample, so the
  item-to-item variation both systems share cancels. ``inside_noise`` says the interval contains 0.
* :func:`micro_f1`: micro F1 from per-item (matched, predicted, gold) counts on resampled item positions,
  averaged over runs: the bootstrap of span and pair extraction scores, paired when two systems share the rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence
from statistics import NormalDist

import numpy as np
from numpy.typing import ArrayLike

from protege.evaluate.metrics import macro_f1


def _z(confidence: float) -> float:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence={confidence}: give a probability strictly between 0 and 1, e.g. 0.95")
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def wilson(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """(low, high) Wilson score interval of ``successes`` out of ``n``; (0, 1) when n = 0."""
    if n < 0 or not 0 <= successes <= max(n, 0):
        raise ValueError(f"successes={successes}, n={n}: need 0 <= successes <= n")
    z = _z(confidence)
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # At 0 or n successes one bound is exactly 0 or 1; say so instead of leaving a rounding residue.
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return low, high


@dataclass(frozen=True)
class Difference:
    """mean(a) − mean(b) with its bootstrap interval."""

    estimate: float
    low: float
    high: float
    confidence: float
    items: int

    @property
    def inside_noise(self) -> bool:
        """The interval contains 0: the data do not tell the two apart."""
        return self.low <= 0.0 <= self.high


def paired_bootstrap(a: ArrayLike, b: ArrayLike, *, resamples: int = 10_000, confidence: float = 0.95,
                     seed: int = 0) -> Difference:
    """Percentile bootstrap of the mean per-item difference of two score arrays over the same items."""
    x, y = np.asarray(a, dtype=np.float64).reshape(-1), np.asarray(b, dtype=np.float64).reshape(-1)
    if x.shape != y.shape:
        raise ValueError(f"paired scores differ in length ({x.size} vs {y.size}): score both systems on the "
                         f"same items, in the same order")
    if x.size == 0:
        raise ValueError("no items to compare: paired_bootstrap needs at least one scored item")
    if resamples < 1:
        raise ValueError(f"resamples={resamples}: need at least 1")
    _z(confidence)
    diff = x - y
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    chunk = max(1, 2_000_000 // diff.size)  # bound the index matrix to a few million entries
    for start in range(0, resamples, chunk):
        rows = min(chunk, resamples - start)
        means[start:start + rows] = diff[rng.integers(0, diff.size, size=(rows, diff.size))].mean(axis=1)
    tail = (1 - confidence) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return Difference(float(diff.mean()), float(low), float(high), confidence, int(diff.size))


def bootstrap_metric(metric: Callable[[np.ndarray], float], items: int, *, resamples: int = 1_000,
                     confidence: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """(low, high) percentile bootstrap interval of ``metric(rows)``, a score of the items at positions ``rows``.

    For scores that are not a mean over items (macro-F1): each resample draws ``items`` positions with
    replacement and recomputes the whole metric on them.
    """
    _z(confidence)
    if items < 1:
        raise ValueError("no items to resample: bootstrap_metric needs at least one scored item")
    rng = np.random.default_rng(seed)
    values = np.array([metric(rng.integers(0, items, size=items)) for _ in range(resamples)])
    tail = (1 - confidence) / 2
    low, high = np.quantile(values, [tail, 1 - tail])
    return float(low), float(high)


def micro_f1(counts: Sequence[np.ndarray], rows: np.ndarray) -> np.ndarray:
    """Micro F1 = 2·matched / (predicted + gold) on each row of item positions, averaged over runs.

    ``counts`` holds one ``(3, items)`` array per run (e.g. per training seed): matched, predicted and gold
    units of every item. ``rows`` is ``(resamples, items)`` positions (``np.arange(items)[None]`` for the score
    itself); the result has one F1 per row — the mean over runs of each run's micro F1 on those items. Resampling
    items keeps the micro average honest (an item with many gold units weighs more), and drawing the same rows for
    two systems pairs their comparison.
    """
    scores = []
    for c in counts:
        m, p, g = (c[k][rows].sum(-1) for k in range(3))
        scores.append(np.where(p + g > 0, 2 * m / np.maximum(p + g, 1), 0.0))
    return np.mean(scores, axis=0)


def gold_scores(gold: ArrayLike, pred: ArrayLike, num_classes: int, *, seed: int = 0) -> dict:
    """``n``, ``accuracy`` and ``macro_f1`` of ``pred`` against ``gold`` (label indices), each with a 95 % interval."""
    g, p = np.asarray(gold, dtype=np.int64), np.asarray(pred, dtype=np.int64)
    if g.shape != p.shape or g.size == 0:
        raise ValueError(f"gold_scores needs as many predictions as gold labels, at least one (got {p.size} "
                         f"predictions for {g.size} gold labels)")
    right = int((p == g).sum())
    return {"n": int(g.size), "accuracy": round(right / g.size, 4),
            "accuracy_interval": [round(x, 4) for x in wilson(right, int(g.size))],
            "macro_f1": round(macro_f1(g, p, num_classes), 4),
            "macro_f1_interval": [round(x, 4) for x in bootstrap_metric(
                lambda rows: macro_f1(g[rows], p[rows], num_classes), int(g.size), seed=seed)]}
