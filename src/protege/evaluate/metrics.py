"""Classification quality and calibration as pure functions of integer labels and probability rows.

Labels are class ids ``0..C-1``. Accuracy, the confusion matrix and F1 are scikit-learn's; macro-F1 averages
over the classes that occur in either the truth or the predictions (a class with no predicted and no true
example is left out rather than counted as 0 or 1). What scikit-learn does not have lives here: the binned
reliability and expected calibration error, and temperature scaling (one scalar fitted on held-out labels that
softens or sharpens a model's probabilities without changing a single prediction).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike
from scipy.optimize import minimize_scalar
from sklearn import metrics as skm


def _ints(values: ArrayLike) -> np.ndarray:
    return np.asarray(values, dtype=np.int64).reshape(-1)


def _same_length(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise ValueError(f"label arrays differ in length: {a.shape[0]} vs {b.shape[0]}")


def accuracy(y_true: ArrayLike, y_pred: ArrayLike) -> float:
    t, p = _ints(y_true), _ints(y_pred)
    _same_length(t, p)
    return float(skm.accuracy_score(t, p)) if t.size else float("nan")


def agreement(pred_a: ArrayLike, pred_b: ArrayLike) -> float:
    """Share of examples on which two models predict the same class (the truth plays no part)."""
    return accuracy(pred_a, pred_b)


def confusion(y_true: ArrayLike, y_pred: ArrayLike, num_classes: int) -> np.ndarray:
    """(C, C) counts; row = true class, column = predicted class."""
    t, p = _ints(y_true), _ints(y_pred)
    _same_length(t, p)
    if t.size and (min(t.min(), p.min()) < 0 or max(t.max(), p.max()) >= num_classes):
        raise ValueError(f"labels must lie in 0..{num_classes - 1}")
    if not t.size:
        return np.zeros((num_classes, num_classes), dtype=np.int64)
    # bincount, not sklearn: bootstrap intervals recompute this a thousand times per score.
    return np.bincount(t * num_classes + p, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def per_class_f1(y_true: ArrayLike, y_pred: ArrayLike, num_classes: int) -> np.ndarray:
    """F1 of each class; NaN for a class absent from both truth and predictions."""
    cm = confusion(y_true, y_pred, num_classes)
    tp = np.diag(cm).astype(np.float64)
    denominator = cm.sum(0) + cm.sum(1)  # 2 tp + fp + fn: zero exactly when the class is absent from both
    f1 = np.full(num_classes, np.nan)
    present = denominator > 0
    f1[present] = 2 * tp[present] / denominator[present]
    return f1


def macro_f1(y_true: ArrayLike, y_pred: ArrayLike, num_classes: int) -> float:
    f1 = per_class_f1(y_true, y_pred, num_classes)
    present = ~np.isnan(f1)
    return float(f1[present].mean()) if present.any() else float("nan")


def majority_class(labels: ArrayLike, num_classes: int) -> int:
    """The most frequent class (lowest id on ties)."""
    return int(np.bincount(_ints(labels), minlength=num_classes).argmax())


def largest_class_share(y_pred: ArrayLike) -> float:
    """Share of predictions that fall in the most predicted class: 1.0 means a one-class model."""
    p = _ints(y_pred)
    return float(np.bincount(p).max() / p.size) if p.size else float("nan")


@dataclass(frozen=True)
class Reliability:
    """Per-bin calibration: bins of equal width over the confidence (the top probability) in [0, 1]."""

    edges: np.ndarray  # bins + 1 edges
    confidence: np.ndarray  # mean confidence in each bin (NaN if empty)
    accuracy: np.ndarray  # accuracy in each bin (NaN if empty)
    count: np.ndarray  # examples in each bin

    @property
    def ece(self) -> float:
        """Expected calibration error: the count-weighted mean |accuracy − confidence| over non-empty bins."""
        filled = self.count > 0
        total = self.count.sum()
        if total == 0:
            return float("nan")
        gaps = np.abs(self.accuracy[filled] - self.confidence[filled])
        return float((gaps * self.count[filled]).sum() / total)


def reliability(probs: ArrayLike, y_true: ArrayLike, bins: int = 10) -> Reliability:
    """Bin examples by confidence; bin ``b`` holds confidences in (edge_b, edge_b+1], the first also holds 0."""
    p = np.asarray(probs, dtype=float)
    t = _ints(y_true)
    if p.ndim != 2 or p.shape[0] != t.size:
        raise ValueError(f"probs must be (N, C) with N = {t.size} labels, got shape {p.shape}")
    if bins < 1:
        raise ValueError(f"bins={bins}: need at least one bin")
    conf = p.max(1)
    correct = (p.argmax(1) == t).astype(float)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, bins - 1)
    count = np.bincount(which, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.bincount(which, weights=conf, minlength=bins) / count
        mean_acc = np.bincount(which, weights=correct, minlength=bins) / count
    return Reliability(edges=edges, confidence=mean_conf, accuracy=mean_acc, count=count)


def expected_calibration_error(probs: ArrayLike, y_true: ArrayLike, bins: int = 10) -> float:
    return reliability(probs, y_true, bins).ece


def summarize(y_true: ArrayLike, probs: ArrayLike, num_classes: int, bins: int = 10) -> dict[str, float]:
    """Accuracy, macro-F1, ECE and the largest predicted-class share of one model's probabilities."""
    p = np.asarray(probs, dtype=float)
    pred = p.argmax(1)
    return {
        "accuracy": accuracy(y_true, pred),
        "macro_f1": macro_f1(y_true, pred, num_classes),
        "ece": expected_calibration_error(p, y_true, bins),
        "largest_class_share": largest_class_share(pred),
    }


def apply_temperature(probs: ArrayLike, temperature: float) -> np.ndarray:
    """``softmax(log(probs) / T)``: T > 1 softens over-confident probabilities, T < 1 sharpens under-confident ones."""
    if temperature <= 0:
        raise ValueError(f"temperature={temperature}: must be positive")
    logits = np.log(np.clip(np.asarray(probs, dtype=np.float64), 1e-300, None)) / temperature
    logits -= logits.max(axis=-1, keepdims=True)
    out = np.exp(logits)
    return out / out.sum(axis=-1, keepdims=True)


def fit_temperature(probs: ArrayLike, y_true: ArrayLike, bounds: tuple[float, float] = (0.05, 20.0)) -> float:
    """The temperature minimising the negative log-likelihood of ``y_true`` under :func:`apply_temperature`."""
    t = _ints(y_true)
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] != t.size or not t.size:
        raise ValueError(f"fit_temperature: probs (N, C) with N = {t.size} > 0 labels, got shape {p.shape}")

    def nll(log_t: float) -> float:
        scaled = apply_temperature(p, float(np.exp(log_t)))
        return float(-np.log(np.clip(scaled[np.arange(t.size), t], 1e-300, None)).mean())

    found = minimize_scalar(nll, bounds=tuple(np.log(bounds)), method="bounded", options={"xatol": 1e-4})
    return float(np.exp(found.x))
