"""Teacher against student on gold test data: scores, agreement, the share of the teacher's quality the student
keeps, and flags for results that must not be read as a success (a teacher near chance, a one-class student, a
student no better than always answering the majority class).

Everything here is a pure function of labels and probabilities; the evaluate stage gathers them from a run.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
from pydantic import Field

from protege.evaluate import metrics
from protege.core.section import Section


class Thresholds(Section):
    """When a result is flagged instead of presented as a result."""

    chance_margin: float = Field(
        0.05, ge=0, description="A teacher whose accuracy is within this of the majority-class baseline is near chance."
    )
    one_class_share: float = Field(
        0.95, gt=0, le=1, description="A model putting at least this share of test examples in one class predicts one class."
    )
    majority_margin: float = Field(
        0.02, ge=0, description="A student must beat the majority-class accuracy by at least this to count as above it."
    )


def model_scores(gold: np.ndarray, probs: np.ndarray, num_classes: int, bins: int) -> dict[str, Any]:
    """Accuracy, macro-F1, ECE, confusion matrix, reliability bins and predicted-class counts of one model."""
    probs = np.asarray(probs, dtype=float)
    if probs.shape != (gold.size, num_classes):
        raise ValueError(f"probabilities of shape {probs.shape}; expected ({gold.size}, {num_classes})")
    pred = probs.argmax(1)
    rel = metrics.reliability(probs, gold, bins)
    return {
        **metrics.summarize(gold, probs, num_classes, bins),
        "predicted_counts": np.bincount(pred, minlength=num_classes).tolist(),
        "confusion": metrics.confusion(gold, pred, num_classes).tolist(),
        "reliability": {
            "edges": rel.edges.tolist(),
            "confidence": [None if np.isnan(v) else float(v) for v in rel.confidence],
            "accuracy": [None if np.isnan(v) else float(v) for v in rel.accuracy],
            "count": rel.count.tolist(),
        },
    }


def majority_scores(gold: np.ndarray, labels: list[str]) -> dict[str, Any]:
    """Always answering the test split's most frequent class: the floor any useful model must clear."""
    k = len(labels)
    cls = metrics.majority_class(gold, k)
    pred = np.full(gold.size, cls)
    return {"label": labels[cls], "accuracy": metrics.accuracy(gold, pred), "macro_f1": metrics.macro_f1(gold, pred, k)}


def _ratio(a: float, b: float) -> float | None:
    return a / b if b > 0 else None


def compare(
    gold: Any, probs: Mapping[str, Any], labels: list[str], *, bins: int = 10
) -> dict[str, Any]:
    """Scores of every model in ``probs`` (names -> (N, C) probabilities; ``teacher`` and ``student`` expected),
    the majority baseline, teacher–student agreement and the share of the teacher's quality kept."""
    gold = np.asarray(gold, dtype=np.int64)
    models = {name: model_scores(gold, p, len(labels), bins) for name, p in probs.items()}
    out: dict[str, Any] = {"labels": labels, "test_examples": int(gold.size), "majority": majority_scores(gold, labels),
                           "models": models}
    if "teacher" in probs and "student" in probs:
        t, s = models["teacher"], models["student"]
        out["agreement"] = metrics.agreement(np.asarray(probs["teacher"]).argmax(1), np.asarray(probs["student"]).argmax(1))
        out["kept"] = {"accuracy": _ratio(s["accuracy"], t["accuracy"]), "macro_f1": _ratio(s["macro_f1"], t["macro_f1"])}
    return out


def times(ratio: float) -> str:
    """A speed ratio for people: 40x, 3.5x."""
    return f"{ratio:.0f}x" if ratio >= 10 else f"{ratio:.1f}x"


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %"


def flags(result: Mapping[str, Any], thresholds: Thresholds, *, prepared: bool = False) -> list[dict[str, str]]:
    """Problems a reader must see before the numbers, each with a code and a plain explanation (``prepared``:
    the recipe already prepared the teacher, so that is not advised again)."""
    out = []
    majority = result["majority"]
    models = result["models"]
    labels = result["labels"]
    teacher, student = models.get("teacher"), models.get("student")
    if teacher is not None and teacher["accuracy"] < majority["accuracy"] + thresholds.chance_margin:
        out.append({"code": "teacher_near_chance", "message": (
            f"The teacher is near chance: {_pct(teacher['accuracy'])} accuracy against {_pct(majority['accuracy'])} "
            f"for always answering '{majority['label']}'. Its labels carry little about the task, so a student "
            "trained on them cannot be good. " + ("It was already prepared on the gold seed: use a stronger teacher "
                                                  "or add few-shot examples (task.few_shot)." if prepared else
                                                  "Prepare the teacher on a gold seed (prepare_teacher), add "
                                                  "few-shot examples, or use a stronger teacher."))})
    for name, who in (("teacher", teacher), ("student", student)):
        if who is not None and who["largest_class_share"] >= thresholds.one_class_share:
            top = int(np.argmax(who["predicted_counts"]))
            out.append({"code": f"{name}_one_class", "message": (
                f"The {name} puts {_pct(who['largest_class_share'])} of test examples in '{labels[top]}': it has "
                "learnt a label prior, not the task. Its accuracy only reflects how common that class is.")})
    if student is not None and student["accuracy"] < majority["accuracy"] + thresholds.majority_margin:
        out.append({"code": "student_not_above_majority", "message": (
            f"The student ({_pct(student['accuracy'])}) is not above always answering '{majority['label']}' "
            f"({_pct(majority['accuracy'])}). Do not deploy it; see the other flags for why.")})
    return out


def headline(result: Mapping[str, Any]) -> str:
    """One plain sentence: the student against the majority class and the teacher on gold test data."""
    models = result["models"]
    majority = result["majority"]
    parts = []
    student, teacher = models.get("student"), models.get("teacher")
    if student is not None:
        gain = 100 * (student["accuracy"] - majority["accuracy"])
        parts.append(f"student {_pct(student['accuracy'])} vs majority {_pct(majority['accuracy'])} ({gain:+.1f} points)")
    if teacher is not None:
        parts.append(f"teacher {_pct(teacher['accuracy'])}")
    seed = models.get("gold_seed_student")
    if seed is not None:
        parts.append(f"student on the gold seed alone {_pct(seed['accuracy'])}")
    kept = (result.get("kept") or {}).get("macro_f1")
    if kept is not None:
        parts.append(f"student keeps {100 * kept:.0f} % of the teacher's macro-F1")
    speed = result.get("speed")
    if speed:
        parts.append(f"student is {times(speed['speedup_throughput'])} faster than the teacher")
    return "; ".join(parts) + " (accuracy on gold test data)."
