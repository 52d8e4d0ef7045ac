"""Turning a teacher's label scores into label distributions: normalising, calibrating, ensembling.

Arrays are log-probabilities shaped ``(texts, templates, labels)``. A small instruct model scoring label words
carries a strong prior for some words whatever the text says (it may give every text the same label); the
calibrations remove that prior:

- ``contextual`` (Zhao et al., 2021, "Calibrate before use"): score content-free inputs such as "N/A"; their
  average label distribution ``p_cf`` is the prior, and each text's distribution is divided by it.
- ``mean``: the prior is the teacher's mean label log-probability over the unlabelled pool itself, subtracted
  from every text's scores (a per-class bias estimated on the data the teacher will label).

An ensemble averages the (calibrated) log-probabilities of several prompt templates: a geometric mean of their
distributions, renormalised.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np


def group_scores(word_scores: Sequence[float], owners: Sequence[int], groups: int) -> list[float]:
    """Per-group log-probability: log of the summed probabilities of the words each group owns.

    ``owners[i]`` is the group (label, polarity, ...) of the word scored ``word_scores[i]``; a label with
    several verbalizers gets the log-sum-exp of their scores. A group without words scores ``-inf``.
    """
    if len(word_scores) != len(owners):
        raise ValueError(f"expected {len(owners)} word scores, got {len(word_scores)}")
    out = []
    for g in range(groups):
        mine = [s for s, o in zip(word_scores, owners) if o == g]
        top = max(mine, default=-math.inf)
        out.append(top + math.log(sum(math.exp(s - top) for s in mine)) if top > -math.inf else -math.inf)
    return out


def log_normalise(scores: np.ndarray) -> np.ndarray:
    """Log-softmax over the last axis: label scores -> label log-probabilities (the label set sums to 1)."""
    scores = np.asarray(scores, dtype=np.float64)
    top = scores.max(axis=-1, keepdims=True)
    return scores - top - np.log(np.exp(scores - top).sum(axis=-1, keepdims=True))


def contextual_prior(content_free: np.ndarray) -> np.ndarray:
    """``(templates, labels)`` log prior from content-free scores ``(inputs, templates, labels)``.

    Probabilities are averaged over the content-free inputs (not log-probabilities), as in the original.
    """
    probs = np.exp(log_normalise(content_free)).mean(axis=0)
    return np.log(probs / probs.sum(axis=-1, keepdims=True))


def mean_prior(reference: np.ndarray) -> np.ndarray:
    """``(templates, labels)``: mean label log-probability over ``(texts, templates, labels)`` scores."""
    if len(reference) == 0:
        raise ValueError("mean calibration needs at least one reference text (the unlabelled pool is empty)")
    return log_normalise(reference).mean(axis=0)


def calibrate(logp: np.ndarray, prior: np.ndarray | None) -> np.ndarray:
    """Remove a ``(templates, labels)`` log prior from ``(texts, templates, labels)`` scores; renormalise."""
    logp = log_normalise(logp)
    return logp if prior is None else log_normalise(logp - prior[None])


def ensemble(logp: np.ndarray) -> np.ndarray:
    """``(texts, labels)``: mean of the templates' label log-probabilities, renormalised."""
    return log_normalise(log_normalise(logp).mean(axis=1))


def entropy(probs: np.ndarray, normalised: bool = True) -> np.ndarray:
    """Shannon entropy of each row; divided by log(labels) when ``normalised`` so it lies in [0, 1]."""
    probs = np.asarray(probs, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -np.where(probs > 0, probs * np.log(probs), 0.0).sum(axis=-1)
    return h / np.log(probs.shape[-1]) if normalised else h


def candidate_set(probs: np.ndarray, *, threshold: float, mass: float) -> list[int]:
    """Labels the teacher considers possible: the top label alone when its probability reaches ``threshold``,
    else the smallest set of most probable labels whose probabilities sum to at least ``mass``."""
    order = np.argsort(-probs, kind="stable")
    if probs[order[0]] >= threshold:
        return [int(order[0])]
    covered = np.cumsum(probs[order])
    size = int(np.searchsorted(covered, mass - 1e-12) + 1)
    return [int(i) for i in order[: min(size, len(order))]]
