"""What one augmentation round asks the teacher, free of I/O: the student's errors, its per-class validation
report, the requests of each prompt kind and strategy, their worst-case cost, and the strategy R picks.

A :class:`Request` is one teacher prompt: ``generate`` (a new text, or a rewrite of a mined text, sampled ``n``
times) or ``answer`` (the teacher's calibrated label distribution for an existing gold seed text). Costs are in
call units (:mod:`.augment_config`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np

from protege.core.errors import UserError
from protege.tasks.classify.augment_config import AugmentConfig, RatioThresholds, ReportPrompt, Strategy


@dataclass(frozen=True)
class Split:
    ids: list[str]
    texts: list[str]
    labels: np.ndarray  # the label the student should give: the teacher's on dev, gold on the seed


@dataclass(frozen=True)
class Error:
    id: str
    text: str
    label: int  # what the student should have said
    predicted: int = -1
    confidence: float = 0.0  # the student's probability of its wrong answer


@dataclass(frozen=True)
class Request:
    kind: str  # "generate" (new text or rewrite) or "answer" (teacher label of an existing text)
    label: int  # the label the written text should have, or the answered text's own
    parent: Optional[Error]  # the mined text it is modelled on (None: a report request without hard negatives)
    messages: Optional[list[dict]] = None  # generate: the chat prompt
    n: int = 1  # completions sampled
    relabel: bool = True  # generate: the teacher labels the written texts (False: they keep ``label``)
    shown: tuple[str, ...] = field(default=())  # ids of the hard negatives the prompt shows


def student_errors(split: Split, probs: np.ndarray, limit: Optional[int] = None) -> list[Error]:
    """Texts the student labels differently from ``split.labels``, the most confidently wrong first."""
    pred = probs.argmax(1)
    wrong = np.flatnonzero(pred != split.labels)
    order = wrong[np.argsort(-probs[wrong, pred[wrong]], kind="stable")]
    return [Error(split.ids[i], split.texts[i], int(split.labels[i]), int(pred[i]), float(probs[i, pred[i]]))
            for i in order[:limit]]


def class_report(truth: np.ndarray, probs: np.ndarray, num_labels: int) -> list[dict]:
    """Per-class precision, recall, F1 and support of the student's top labels against ``truth``."""
    pred = probs.argmax(1)
    rows = []
    for c in range(num_labels):
        tp = int(((pred == c) & (truth == c)).sum())
        predicted, support = int((pred == c).sum()), int((truth == c).sum())
        precision = tp / predicted if predicted else 0.0
        recall = tp / support if support else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        rows.append({"label": c, "precision": precision, "recall": recall, "f1": f1, "support": support})
    return rows


def macro_f1(truth: np.ndarray, probs: np.ndarray, num_labels: int) -> float:
    present = [r["f1"] for r in class_report(truth, probs, num_labels) if r["support"]]
    return float(np.mean(present)) if present else 0.0


def render_report(rows: list[dict], labels: list[str]) -> str:
    return "\n".join(f"- {labels[r['label']]}: precision {r['precision']:.0%}, recall {r['recall']:.0%}, "
                     f"F1 {r['f1']:.2f} ({r['support']} texts)" for r in rows)


def render_examples(errors: Sequence[Error], labels: list[str]) -> str:
    if not errors:
        return "(none)"
    return "\n".join(f"- \"{e.text}\" is '{labels[e.label]}'; it said '{labels[e.predicted]}' "
                     f"({e.confidence:.0%} sure)" for e in errors)


def weak_class_shares(rows: list[dict], requests: int, weak_classes: Optional[int]) -> dict[int, int]:
    """Requests per class: the classes with F1 below 1 (or the ``weak_classes`` lowest), in proportion to
    1 - F1, by largest remainder (ties to the lower F1, then the lower index); sums to ``requests``."""
    ranked = sorted(rows, key=lambda r: (r["f1"], r["label"]))
    weak = [r for r in ranked if r["f1"] < 1] if weak_classes is None else ranked[:weak_classes]
    weak = [r for r in weak if r["f1"] < 1] or ranked[:1]
    need = np.array([1 - r["f1"] for r in weak]) + 1e-12
    exact = requests * need / need.sum()
    counts = np.floor(exact).astype(int)
    for i in np.argsort(-np.round(exact - counts, 9), kind="stable")[: requests - counts.sum()]:
        counts[i] += 1
    return {r["label"]: int(k) for r, k in zip(weak, counts) if k}


def _hard_negatives_for(errors: list[Error], label: int, k: int, offset: int) -> list[Error]:
    """Up to k errors involving ``label`` (its texts missed, or texts wrongly given it) first, then others,
    starting ``offset`` places in so requests for one class show different texts."""
    own = [e for e in errors if label in (e.label, e.predicted)]
    pool = own + [e for e in errors if e not in own]
    if not pool or not k:
        return []
    start = offset % len(pool)
    return (pool[start:] + pool[:start])[:k]


def report_requests(config: AugmentConfig, prompt: ReportPrompt, errors: list[Error], rows: list[dict],
                    labels: list[str]) -> list[Request]:
    """Requests for the weak classes; two that would show the same texts are one request sampled more times
    (the same prompt twice is one ledger entry, and would come back as the same text)."""
    table = render_report(rows, labels)
    merged: dict[tuple, list] = {}
    for label, count in weak_class_shares(rows, min(config.max_errors, len(errors)), prompt.weak_classes).items():
        for j in range(count):
            shown = _hard_negatives_for(errors, label, prompt.hard_negatives, j * max(prompt.hard_negatives, 1))
            key = (label, tuple(e.id for e in shown))
            merged.setdefault(key, [shown, 0])[1] += config.per_error
    out = []
    for (label, ids), (shown, n) in merged.items():
        text = prompt.instruction.format(labels=", ".join(labels), report=table,
                                         examples=render_examples(shown, labels), label=labels[label])
        out.append(Request("generate", label, shown[0] if shown else None, [{"role": "user", "content": text}],
                           n, True, ids))
    return out


def plan_requests(config: AugmentConfig, strategy: Strategy, errors: list[Error], rows: list[dict],
                  labels: list[str], unanswered_seed: list[Error]) -> list[Request]:
    """The round's requests before the budget cut. ``errors``: mined, most confident first; ``rows``: the
    student's dev report; ``unanswered_seed``: gold seed texts the teacher has not answered yet, errors first."""
    if strategy == "answer_aug":
        return [Request("answer", e.label, e) for e in unanswered_seed[: config.max_errors]]
    if strategy == "rephrase":
        return [Request("generate", e.label, e,
                        [{"role": "user", "content": config.rephrase_instruction.format(text=e.text)}],
                        config.per_error, relabel=False) for e in errors[: config.max_errors]]
    if isinstance(config.prompt, ReportPrompt):
        return report_requests(config, config.prompt, errors, rows, labels)
    return [Request("generate", e.label, e,
                    [{"role": "user", "content": config.prompt.instruction.format(text=e.text, label=labels[e.label])}],
                    config.per_error) for e in errors[: config.max_errors]]


def worst_cost(request: Request, generation_cost: float, label_cost: int) -> float:
    """Call units a request can cost at most: its completions, and labelling each one it writes."""
    if request.kind == "answer":
        return float(label_cost)
    return request.n * (generation_cost + (label_cost if request.relabel else 0))


def affordable(requests: list[Request], remaining: float, generation_cost: float, label_cost: int) -> list[Request]:
    """The longest prefix of ``requests`` whose worst-case cost fits in ``remaining`` units."""
    total, out = 0.0, []
    for request in requests:
        total += worst_cost(request, generation_cost, label_cost)
        if total > remaining + 1e-9:
            break
        out.append(request)
    return out


def budget_ratio(units: int, seed_size: int) -> float:
    """R = budget / seed size; refused (a UserError naming the fix) below 1, before anything is spent."""
    if seed_size <= 0:
        raise UserError("augment.budget: the budget ratio R = budget / seed size needs a gold seed, and this run "
                         "has none: set data.seed_size, or remove augment.budget and strategy auto")
    ratio = units / seed_size
    if ratio < 1:
        raise UserError(f"augment.budget: R = {units} units / {seed_size} seed texts = {ratio:.2f} is below 1: "
                         "the budget cannot give every seed text even one teacher call. Raise augment.budget.units "
                         f"to at least {seed_size}, or use a smaller seed (data.seed_size)")
    return ratio


def choose_strategy(ratio: float, thresholds: RatioThresholds) -> Strategy:
    if ratio < thresholds.rephrase_from:
        return "answer_aug"
    return "rephrase" if ratio < thresholds.new_from else "new"


def units(generated: int, scored: int, generation_cost: float) -> float:
    """Call units of ``generated`` completions and ``scored`` prompts."""
    return generated * generation_cost + scored
