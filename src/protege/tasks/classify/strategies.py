"""Which annotated texts to train on, under a budget: pure functions from arrays to picks with reasons.

Every strategy returns at most ``budget`` :class:`Pick` objects, best first, each with the row it keeps and a
sentence saying why, which the ``selected`` table stores beside the example.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from protege.models.calibration import entropy


@dataclass(frozen=True)
class Pick:
    index: int  # row position in the arrays given
    reason: str


def _check(budget: int) -> None:
    if budget < 1:
        raise ValueError(f"select.budget must be at least 1, got {budget}")


def random_subset(n: int, budget: int, seed: int) -> list[Pick]:
    _check(budget)
    order = np.random.default_rng(seed).permutation(n)[:budget]
    return [Pick(int(i), f"random: draw {r + 1}/{len(order)} of {n} (seed {seed})")
            for r, i in enumerate(order)]


def most_confident(confidence: np.ndarray, budget: int) -> list[Pick]:
    """The texts the teacher is surest about (its top label probability, highest first)."""
    _check(budget)
    order = np.argsort(-confidence, kind="stable")[:budget]
    n = len(confidence)
    return [Pick(int(i), f"confidence={confidence[i]:.2f} rank {r + 1}/{n}") for r, i in enumerate(order)]


def class_balanced(
    labels: np.ndarray, confidence: np.ndarray, budget: int, names: Sequence[str],
    prior: Optional[Sequence[float]] = None,
) -> list[Pick]:
    """The most confident texts of each teacher label, at most a quota per label: budget x prior share, rounded
    so the quotas sum to the budget, the prior uniform unless given. A label with fewer texts leaves its quota
    unused rather than handing it to a label the teacher already over-predicts.

    A uniform prior suits a teacher that collapses onto one label; on data whose classes are far from even
    (two thirds of drug reviews are positive) it teaches the student the wrong prior, so pass the class shares
    of the gold seed instead.
    """
    _check(budget)
    shares = np.full(len(names), 1 / len(names)) if prior is None else np.asarray(prior, dtype=np.float64)
    if shares.shape != (len(names),) or (shares < 0).any() or shares.sum() <= 0:
        raise ValueError(f"class_balanced: prior needs one non-negative share per label {list(names)}, got {prior}")
    exact = budget * shares / shares.sum()
    quotas = np.floor(exact).astype(int)
    quotas[np.argsort(-(exact - quotas), kind="stable")[: budget - quotas.sum()]] += 1  # largest remainders
    picks: list[tuple[float, Pick]] = []
    for k, name in enumerate(names):
        rows = np.flatnonzero(labels == k)
        ranked = rows[np.argsort(-confidence[rows], kind="stable")][: quotas[k]]
        for r, i in enumerate(ranked):
            reason = (f"balanced: {r + 1}/{len(ranked)} of label {name} (quota {quotas[k]}), "
                      f"confidence={confidence[i]:.2f}")
            picks.append((float(confidence[i]), Pick(int(i), reason)))
    picks.sort(key=lambda cp: -cp[0])
    return [p for _, p in picks[:budget]]


def llkd(
    teacher_probs: np.ndarray,
    student_probs: np.ndarray,
    budget: int,
    *,
    min_teacher_confidence: float | None = None,
) -> list[Pick]:
    """Texts the teacher is sure of and a first-round student is not (after LLKD, Li et al. 2024).

    A text qualifies when the teacher's confidence reaches the threshold: ``min_teacher_confidence``, or by
    default the median confidence among texts with the same teacher label (a per-class threshold, so a label
    the teacher is always timid about is not shut out). Qualifying texts rank by teacher confidence times the
    student's normalised entropy, highest first.
    """
    _check(budget)
    teacher_probs = np.asarray(teacher_probs, dtype=np.float64)
    student_probs = np.asarray(student_probs, dtype=np.float64)
    if teacher_probs.shape != student_probs.shape:
        raise ValueError(
            f"llkd: teacher probabilities {teacher_probs.shape} and student probabilities "
            f"{student_probs.shape} must describe the same texts and labels"
        )
    confidence = teacher_probs.max(-1)
    labels = teacher_probs.argmax(-1)
    if min_teacher_confidence is None:
        medians = {k: np.median(confidence[labels == k]) for k in np.unique(labels)}
        threshold = np.array([medians[k] for k in labels])
    else:
        threshold = np.full(len(confidence), min_teacher_confidence)
    uncertainty = entropy(student_probs)
    score = confidence * uncertainty
    eligible = np.flatnonzero(confidence >= threshold)
    order = eligible[np.argsort(-score[eligible], kind="stable")][:budget]
    return [
        Pick(int(i), f"llkd: teacher {confidence[i]:.2f} (threshold {threshold[i]:.2f}), student entropy "
                     f"{uncertainty[i]:.2f}, rank {r + 1}/{len(eligible)}")
        for r, i in enumerate(order)
    ]
