"""Polarity scoring: the teacher's distribution over the task's polarities for one aspect of one sentence.

For every (sentence, aspect term) the prompt names the aspect
(:func:`~protege.tasks.absa.prompts.polarity_prompt`) and each polarity's words are scored as the answer, in
one ledgered ``score`` call for all of them; a polarity with several words gets their summed probability
(:func:`protege.models.calibration.group_scores`). A small teacher prefers some polarity words whatever the
sentence says, so the scores are calibrated with the shared layer: ``mean`` removes the mean polarity
log-probability over the scored aspects, ``contextual`` the distribution of a content-free sentence and
aspect, ``none`` keeps them as they are.
"""

from __future__ import annotations

from typing import Any, Literal, Mapping, Sequence

import numpy as np

from protege.models import calibration as cal
from protege.tasks.absa.prompts import polarity_prompt

Calibration = Literal["none", "mean", "contextual"]
CONTENT_FREE = (("N/A", "N/A"), ("", "it"))


def polarity_words(polarities: Sequence[str], extra: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    """Each polarity's answer words: its own name, plus the recipe's extra words."""
    return {q: [q, *[w for w in extra.get(q, ()) if w != q]] for q in polarities}


def score_aspects(
    teacher: Any, items: Sequence[tuple[str, str]], words: Mapping[str, Sequence[str]]
) -> np.ndarray:
    """``(items, polarities)`` log-probabilities (unnormalised) of each polarity for each (sentence, term)."""
    if not items:
        return np.zeros((0, len(words)))
    polarities = list(words)
    flat = [w for q in polarities for w in words[q]]
    owners = [k for k, q in enumerate(polarities) for _ in words[q]]
    prompts = [polarity_prompt(sentence, term, polarities) for sentence, term in items]
    scores = teacher.score(prompts, [flat] * len(prompts))
    return np.array([cal.group_scores(row, owners, len(polarities)) for row in scores], dtype=np.float64)


def calibrate_polarities(
    logp: np.ndarray, kind: Calibration, content_free: np.ndarray | None = None
) -> np.ndarray:
    """``(items, polarities)`` probabilities without the teacher's polarity prior (see the module doc)."""
    cube = logp[:, None, :]  # the calibration layer works on (texts, templates, labels)
    if kind == "none" or not len(logp):
        prior = None
    elif kind == "mean":
        prior = cal.mean_prior(cube)
    else:
        if content_free is None:
            raise ValueError("contextual calibration needs the content-free scores")
        prior = cal.contextual_prior(content_free[:, None, :])
    return np.exp(cal.calibrate(cube, prior)[:, 0])
