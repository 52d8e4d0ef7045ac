"""Training sets for the tagger and the label variants the benchmark compares; noisy self-training rounds.

Label variants of a synthetic row (:data:`VARIANTS`): ``raw`` keeps only the teacher's pairs whose term occurs
verbatim in the sentence with a canonical polarity name (what a pipeline without normalisation could use),
``normalised`` is our normalisation (:func:`protege.tasks.absa.ground.normalise`), ``published`` the file's
own normalised label (imported rows).

:func:`self_train` is DS²-ABSA's label refinement by noisy self-training: each round fits a fresh tagger with
input and model noise on seed + synthetic (synthetic down-weighted), re-predicts the synthetic sentences and
merges the predictions into their labels (:func:`protege.tasks.absa.refine.refine_labels`); the change rate
of each round is reported.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Optional, Sequence

import torch

from protege.core.run import Run
from protege.tasks.absa.refine import RefineConfig, refine_labels
from protege.tasks.absa.tagger import TaggedExample, TaggerConfig, fit_tagger, predict_spans
from protege.tasks.absa.tags import TagScheme
from protege.tasks.absa.task import AbsaExample, AbsaTask, Aspect

VARIANTS = ("raw", "normalised", "published")


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """torch's intra-op threads set to ``n`` for a block: on a small CPU shared with other work the default
    threads spin against each other (a tiny training ran 40x faster with one)."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def raw_aspects(sentence: str, pairs: Sequence[Sequence[Any]], task: AbsaTask) -> tuple[Aspect, ...]:
    """The pairs usable without normalisation: a verbatim term at its first free occurrence."""
    found: list[Aspect] = []
    for pair in pairs:
        if len(pair) < 2 or str(pair[1]) not in task.labels or not str(pair[0]):
            continue
        term, start = str(pair[0]), sentence.find(str(pair[0]))
        while start >= 0 and any(start < a.end and a.start < start + len(term) for a in found):
            start = sentence.find(term, start + 1)
        if start >= 0:
            found.append(Aspect(start, start + len(term), term, str(pair[1])))
    return tuple(sorted(found))


def raw_label_of(text: str) -> list:
    try:
        value = json.loads(text) if text else []
    except ValueError:
        return []
    return value if isinstance(value, list) else []


def training_set(
    seed: Sequence[AbsaExample],
    synthetic: Sequence[AbsaExample],
    weight: float,
    distributions: Optional[Mapping[str, Sequence[Optional[Mapping[str, float]]]]] = None,
) -> list[TaggedExample]:
    """Seed rows at weight 1, synthetic at ``weight``; soft polarity targets for ids in ``distributions``."""
    rows = [TaggedExample.of(e) for e in seed]
    for e in synthetic:
        dist = (distributions or {}).get(e.id)
        rows.append(
            TaggedExample(
                e.sentence,
                e.aspects,
                weight,
                tuple(dist) if dist is not None and len(dist) == len(e.aspects) else None,
            )
        )
    return rows


@dataclass
class Round:
    round: int
    change_rate: float
    summary: dict
    best_dev_pair_f1: Optional[float]


def self_train(
    config: TaggerConfig,
    refine: RefineConfig,
    rounds: int,
    seed: Sequence[AbsaExample],
    synthetic: Sequence[AbsaExample],
    dev: Sequence[AbsaExample],
    scheme: TagScheme,
    weight: float,
    *,
    run: Optional[Run] = None,
    random_seed: int = 0,
) -> tuple[list[AbsaExample], list[Round]]:
    """``rounds`` of noisy self-training; returns the refined synthetic examples and each round's summary."""
    current, history = list(synthetic), []
    for r in range(1, rounds + 1):
        fitted = fit_tagger(
            config,
            training_set(seed, current, weight),
            scheme,
            dev=dev,
            run=run,
            name=f"refine-{r}",
            seed=random_seed + r,
        )
        spans = predict_spans(
            fitted.model,
            fitted.tokenizer,
            scheme,
            [e.sentence for e in current],
            max_length=config.max_length,
        )
        labels, summary = refine_labels(
            [e.sentence for e in current], [e.aspects for e in current], spans, refine
        )
        current = [AbsaExample(e.id, e.sentence, label) for e, label in zip(current, labels)]
        evals = [e["dev_pair_f1"] for e in fitted.result.evaluations if "dev_pair_f1" in e]
        history.append(Round(r, summary.change_rate, summary.as_dict(), max(evals) if evals else None))
    return current, history
