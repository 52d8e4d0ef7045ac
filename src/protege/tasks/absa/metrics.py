"""Scores for aspect-based sentiment: pairs, aspect terms, polarities, and the health of generated output.

A label set is a mapping ``sentence id -> aspects``. Scores are micro-averaged over multisets:

- **pair P/R/F1** over (sentence id, term, polarity) with the term lower-cased and its whitespace collapsed; a
  pair listed twice counts twice, and a prediction matches at most one gold pair;
- **aspect-term P/R/F1**: the same with polarity ignored;
- **polarity accuracy and macro-F1** on aligned lists of gold and predicted polarities: either the polarities
  a model gave to the gold aspects, or those of the aspects an extractor found (:func:`matched_polarities`);
  macro-F1 averages over the task's polarities, a polarity absent from both lists scoring 0 (scikit-learn's
  ``zero_division=0``), so read it with the class counts;
- **confusion table** over matched aspects, rows gold, columns predicted;
- **generation rates** of teacher output: the share of answers parsed, and of pairs grounded in the sentence.

Precision of an empty prediction set and recall of an empty gold set are 0, not undefined.
:func:`multi_polarity_ids` selects the sentences whose gold aspects carry several distinct polarities, the
hard case for a model that tends to give one polarity to the whole sentence; pass such id sets as ``subsets``.
:func:`sentence_counts` gives the per-sentence counts behind the micro scores, for bootstrap intervals.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from typing import Collection, Mapping, Optional, Sequence

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

from protege.tasks.absa.ground import Normalised
from protege.tasks.absa.parse import Parsed
from protege.tasks.absa.task import AbsaExample, Aspect

Labels = Mapping[str, Sequence[Aspect]]


def labels_of(examples: Sequence[AbsaExample]) -> dict[str, tuple[Aspect, ...]]:
    return {e.id: e.aspects for e in examples}


def term_key(term: str) -> str:
    return " ".join(term.lower().split())


@dataclass(frozen=True)
class PRF:
    precision: float
    recall: float
    f1: float
    matched: int
    predicted: int
    gold: int

    def as_dict(self) -> dict:
        return asdict(self)


def prf(gold: Counter, pred: Counter) -> PRF:
    """Micro P/R/F1 of two multisets; matches are the multiset intersection."""
    matched, n_pred, n_gold = sum((gold & pred).values()), sum(pred.values()), sum(gold.values())
    p = matched / n_pred if n_pred else 0.0
    r = matched / n_gold if n_gold else 0.0
    return PRF(p, r, 2 * p * r / (p + r) if p + r else 0.0, matched, n_pred, n_gold)


def _multiset(labels: Labels, ids: Collection[str], polarity: bool) -> Counter:
    return Counter((i, term_key(a.term), a.polarity) if polarity else (i, term_key(a.term))
                   for i in ids for a in labels.get(i, ()))


def _ids(gold: Labels, ids: Optional[Collection[str]]) -> list[str]:
    """Scored sentences: the gold ones (optionally a subset); predictions for other ids are ignored."""
    return [i for i in gold if ids is None or i in ids]


def pair_scores(gold: Labels, pred: Labels, ids: Optional[Collection[str]] = None) -> PRF:
    """P/R/F1 over (sentence, term, polarity) on the gold sentences (or those in ``ids``)."""
    keep = _ids(gold, ids)
    return prf(_multiset(gold, keep, True), _multiset(pred, keep, True))


def aspect_scores(gold: Labels, pred: Labels, ids: Optional[Collection[str]] = None) -> PRF:
    """P/R/F1 over (sentence, term), polarity ignored."""
    keep = _ids(gold, ids)
    return prf(_multiset(gold, keep, False), _multiset(pred, keep, False))


def sentence_counts(gold: Labels, pred: Labels, ids: Sequence[str], pairs: bool = True) -> np.ndarray:
    """``(3, len(ids))``: matched, predicted and gold pairs (or terms, ``pairs=False``) of each sentence, in the
    order of ``ids`` — the per-item counts :func:`protege.evaluate.intervals.micro_f1` resamples."""
    score = pair_scores if pairs else aspect_scores
    rows = [score({i: gold[i]}, {i: pred.get(i, ())}) for i in ids]
    return np.array([[r.matched for r in rows], [r.predicted for r in rows], [r.gold for r in rows]], float)


def matched_polarities(gold: Labels, pred: Labels, ids: Optional[Collection[str]] = None
                       ) -> tuple[list[str], list[str]]:
    """Gold and predicted polarities of the aspects both found, term by term in offset order."""
    gold_pols, pred_pols = [], []
    for i in _ids(gold, ids):
        waiting: dict[str, list[str]] = {}
        for a in pred.get(i, ()):
            waiting.setdefault(term_key(a.term), []).append(a.polarity)
        for a in gold[i]:
            queue = waiting.get(term_key(a.term))
            if queue:
                gold_pols.append(a.polarity)
                pred_pols.append(queue.pop(0))
    return gold_pols, pred_pols


def polarity_scores(gold: Sequence[str], pred: Sequence[str], labels: Sequence[str]) -> dict[str, float]:
    """Accuracy and macro-F1 (over ``labels``) of aligned polarity lists; ``n`` is their length."""
    if len(gold) != len(pred):
        raise ValueError(f"polarity_scores: {len(gold)} gold but {len(pred)} predicted polarities")
    if not gold:
        return {"accuracy": 0.0, "macro_f1": 0.0, "n": 0}
    return {"accuracy": float(accuracy_score(gold, pred)),
            "macro_f1": float(f1_score(gold, pred, labels=list(labels), average="macro", zero_division=0)),
            "n": len(gold)}


def confusion(gold: Sequence[str], pred: Sequence[str], labels: Sequence[str]) -> dict[str, dict[str, int]]:
    """``table[gold][predicted]`` counts over ``labels`` (pairs with another polarity are left out)."""
    labels = list(labels)
    if not gold:
        return {g: dict.fromkeys(labels, 0) for g in labels}
    matrix = confusion_matrix(gold, pred, labels=labels)
    return {g: {p: int(matrix[r, c]) for c, p in enumerate(labels)} for r, g in enumerate(labels)}


def multi_polarity_ids(gold: Labels) -> set[str]:
    """Sentences whose gold aspects carry at least two distinct polarities."""
    return {i for i, aspects in gold.items() if len({a.polarity for a in aspects}) >= 2}


def generation_rates(parsed: Sequence[Parsed], normalised: Sequence[Normalised]) -> dict[str, float]:
    """How usable a teacher's answers were: ``parse_rate`` (answers with a readable shape), ``grounding_rate``
    (pairs with a known polarity whose term was found in the sentence), ``kept_rate`` (pairs that became
    aspects)
    and the raw counts."""
    if len(parsed) != len(normalised):
        raise ValueError(f"generation_rates: {len(parsed)} parsed answers but {len(normalised)} normalised "
                         "labels")
    pairs = sum(len(p.pairs) for p in parsed)
    issues = Counter()
    for n in normalised:
        issues.update(n.issues.counts)
    readable = pairs - issues["unknown_polarity"] - issues["conflict_dropped"]
    kept = sum(len(n.aspects) for n in normalised)
    return {
        "answers": len(parsed),
        "parse_rate": sum(p.parsed for p in parsed) / len(parsed) if parsed else 0.0,
        "pairs": pairs,
        "grounding_rate": (readable - issues["ungrounded"]) / readable if readable else 0.0,
        "kept_rate": kept / pairs if pairs else 0.0,
    }


def absa_scores(gold: Labels, pred: Labels, labels: Sequence[str],
                subsets: Optional[Mapping[str, Collection[str]]] = None) -> dict[str, dict]:
    """Pair and aspect P/R/F1, polarity accuracy/macro-F1 and the confusion table over matched aspects, for
    all gold sentences (``"all"``) and each named subset of ids, e.g.
    ``{"multi_polarity": multi_polarity_ids(gold)}``.
    """
    out = {}
    for name, ids in {"all": None, **(subsets or {})}.items():
        g, p = matched_polarities(gold, pred, ids)
        out[name] = {
            "sentences": len(_ids(gold, ids)),
            "pair": pair_scores(gold, pred, ids).as_dict(),
            "aspect": aspect_scores(gold, pred, ids).as_dict(),
            "polarity": polarity_scores(g, p, labels),
            "confusion": confusion(g, p, labels),
        }
    return out
