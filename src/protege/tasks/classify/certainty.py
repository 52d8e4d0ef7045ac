"""How sure the classification result is, and what to do about it: intervals, calibration, errors, advice.

Pure functions of gold labels, probabilities and the run's own record of what it did; the evaluate stage
gathers their inputs. Every accuracy gets a 95 % Wilson interval; the student's difference from each baseline
(teacher, gold-seed-only student, majority class) gets a paired bootstrap interval on the same test texts. A
difference whose interval holds zero is not a difference the test set can show, and the report says so, with
how many test texts would be needed to show one of that size.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np
from pydantic import Field

from protege.core.section import Section
from protege.evaluate import metrics
from protege.evaluate.intervals import paired_bootstrap, wilson

BASELINES = ("teacher", "gold_seed_student", "majority")


class CertaintyConfig(Section):
    """Intervals and the flags that read them."""

    confidence: float = Field(0.95, gt=0.5, lt=1, description="Coverage of every interval in the report.")
    resamples: int = Field(2000, ge=100, description="Bootstrap resamples of the paired differences.")
    ece_flag: float = Field(0.1, gt=0, description="A student whose calibration error on test exceeds this is "
                            "flagged (and temperature scaling on dev is reported before/after).")
    error_examples: int = Field(5, ge=0, description="Test texts the student gets wrong shown in the report.")


def accuracy_interval(correct: np.ndarray, confidence: float) -> list[float]:
    return list(wilson(int(correct.sum()), int(correct.size), confidence))


def differences(gold: np.ndarray, preds: Mapping[str, np.ndarray], cfg: CertaintyConfig) -> dict[str, Any]:
    """Student minus each baseline in accuracy: the mean difference and its paired interval."""
    student = (preds["student"] == gold).astype(float)
    out = {}
    for name in BASELINES:
        if name in preds:
            d = paired_bootstrap(student, (preds[name] == gold).astype(float), resamples=cfg.resamples,
                                 confidence=cfg.confidence)
            out[name] = {"difference": d.estimate, "interval": [d.low, d.high], "separated": not d.inside_noise}
    return out


def texts_needed(diff: float, interval: list[float], n: int) -> int | None:
    """Test texts that would make an interval of this width exclude zero for a difference this large."""
    half = (interval[1] - interval[0]) / 2
    if not diff or not half or not math.isfinite(half):
        return None
    return int(math.ceil(n * (half / abs(diff)) ** 2))


def certainty_flags(result: Mapping[str, Any], did: Mapping[str, Any], cfg: CertaintyConfig) -> list[dict]:
    """Flags about what the test set can and cannot show, and about the student's calibration."""
    out = []
    n = result["test_examples"]
    diffs = result.get("differences") or {}
    unseparated = [name for name in ("teacher", "gold_seed_student") if name in diffs and not diffs[name]["separated"]]
    if unseparated:
        parts = []
        for name in unseparated:
            d = diffs[name]
            need = texts_needed(d["difference"], d["interval"], n)
            more = f"; about {need} test texts would separate a difference this size" if need and need > n else ""
            parts.append(f"student − {name.replace('_', ' ')}: {100 * d['difference']:+.1f} points, 95 % interval "
                         f"[{100 * d['interval'][0]:+.1f}, {100 * d['interval'][1]:+.1f}]{more}")
        out.append({"code": "test_too_small", "message": (
            f"The {n} test texts cannot tell the student from the {' or the '.join(unseparated).replace('_', ' ')}: "
            + "; ".join(parts) + ". Read these as ties, not as wins or losses (raise data.test_size).")})
    seed = diffs.get("gold_seed_student")
    if seed is not None and seed["interval"][0] <= 0:
        help_ = ["more gold labels (data.seed_size)"]
        help_.insert(0, "a stronger teacher (a larger model behind an OpenAI-compatible server: teacher.backend: "
                     "openai)" + (", since this one was already prepared on the gold seed"
                                  if did.get("prepared_teacher") else ", or prepare this one on the gold seed "
                                  "(prepare_teacher)"))
        out.append({"code": "student_not_beyond_gold_seed", "message": (
            f"The student does not beat the same student trained on the gold seed alone beyond the interval "
            f"({100 * seed['difference']:+.1f} points, 95 % interval [{100 * seed['interval'][0]:+.1f}, "
            f"{100 * seed['interval'][1]:+.1f}]): the teacher's labels added nothing measurable. What would help: "
            + "; ".join(help_) + ".")})
    calib = result.get("calibration") or {}
    if calib.get("ece_before") is not None and calib["ece_before"] > cfg.ece_flag:
        way = "under-confident" if calib.get("temperature", 1) < 1 else "over-confident"
        after = (f"; temperature scaling fitted on {calib['dev_texts']} gold dev texts (T = {calib['temperature']:.2f}) "
                 f"brings it to {calib['ece_after']:.3f} on test, and Run.student() applies it"
                 if calib.get("ece_after") is not None else "")
        out.append({"code": "student_miscalibrated", "message": (
            f"The student's probabilities are {way}: calibration error {calib['ece_before']:.3f} on test "
            f"(above {cfg.ece_flag}){after}. Do not read its probabilities as confidences without it.")})
    return out


def calibration(dev_probs: np.ndarray | None, dev_gold: np.ndarray | None, test_probs: np.ndarray,
                test_gold: np.ndarray, bins: int) -> dict[str, Any]:
    """Temperature scaling of the student fitted on gold dev labels; calibration error on test before/after."""
    before = metrics.expected_calibration_error(test_probs, test_gold, bins)
    if dev_probs is None or dev_gold is None or len(dev_gold) < 2:
        return {"ece_before": before, "temperature": None, "ece_after": None, "dev_texts": 0}
    t = metrics.fit_temperature(dev_probs, dev_gold)
    after = metrics.expected_calibration_error(metrics.apply_temperature(test_probs, t), test_gold, bins)
    return {"ece_before": before, "temperature": t, "ece_after": after, "dev_texts": int(len(dev_gold))}


def error_examples(texts: list[str], gold: np.ndarray, preds: Mapping[str, np.ndarray], student_probs: np.ndarray,
                   labels: list[str], n: int) -> list[dict[str, Any]]:
    """The student's most confident mistakes on test, each with the gold label and the teacher's label."""
    wrong = np.flatnonzero(preds["student"] != gold)
    order = wrong[np.argsort(-student_probs[wrong].max(1), kind="stable")][:n]
    return [{"text": texts[i][:300], "gold": labels[gold[i]], "student": labels[preds["student"][i]],
             "student_confidence": round(float(student_probs[i].max()), 3),
             "teacher": labels[preds["teacher"][i]] if "teacher" in preds else None} for i in order]


def advice(result: Mapping[str, Any], did: Mapping[str, Any]) -> list[str]:
    """What to try next, given the flags and what the recipe already did (``did``: prepared_teacher, use_gold,
    seed, dev, calibration_default)."""
    codes = {f["code"] for f in result.get("flags") or []}
    out = []
    weak_teacher = {"teacher_near_chance", "student_not_beyond_gold_seed", "student_below_gold_seed"} & codes
    if weak_teacher:
        if did.get("prepared_teacher"):
            out.append(f"The teacher was already prepared on the {did.get('seed', 0)} gold seed texts; what is left "
                       "is a stronger teacher (teacher.backend: openai with a larger served model) or more gold "
                       "labels (data.seed_size).")
        else:
            out.append("Prepare the teacher on the gold seed before it annotates (add a prepare_teacher: section), "
                       "or use a stronger teacher.")
        if not did.get("use_gold") and did.get("seed"):
            out.append(f"Train on the {did['seed']} gold seed labels as well (train.use_gold: true).")
    if "test_too_small" in codes:
        out.append("Raise data.test_size: the differences above are within what chance gives on this test set.")
    if did.get("calibration_default"):
        out.append(f"The teacher's calibration was the default because data.dev_size gave {did.get('dev', 0)} dev "
                   "texts; 30 or more let annotate choose it on gold labels.")
    if "student_miscalibrated" in codes:
        out.append("Use the student through Run.student() or the exported model card's temperature: its raw "
                   "probabilities are miscalibrated.")
    if not out:
        out.append("Nothing flagged: the student is ready to export (protege export RUN --format onnx).")
    return out
