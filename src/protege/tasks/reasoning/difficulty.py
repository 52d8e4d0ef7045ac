"""Difficulty from k samples per problem: pass rate with its interval, process score, tokens, and two labelings.

* **HS-STaR** (arXiv 2505.19866): ``easy`` when every sample is correct and the mean process score exceeds
  τ_h; ``too_hard`` when none is and the process score is below τ_l; ``boundary`` otherwise. Problems whose
  samples have no process score (no checkable step) are labelled by correctness alone: easy = all correct,
  too hard = none correct.
* **DAST** (arXiv 2503.09029): levels by pass rate: ``easy`` ≥ ``dast_easy``, ``medium`` ≥ ``dast_medium``,
  ``hard`` above 0, ``unsolved`` at 0.

Both read a sample of k, so they are noisy: a problem solved with probability p reads as easy with probability
pᵏ and as too hard with (1 − p)ᵏ (:func:`label_noise`); with k = 3 a problem solved 70 % of the time reads
as easy a third of the time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Literal, Optional, Sequence

from pydantic import Field, model_validator

from protege.evaluate.intervals import wilson
from protege.core.section import Section

HSLabel = Literal["easy", "boundary", "too_hard"]
DastLevel = Literal["easy", "medium", "hard", "unsolved"]
HS_LABELS: tuple[str, ...] = ("easy", "boundary", "too_hard")
DAST_LEVELS: tuple[str, ...] = ("easy", "medium", "hard", "unsolved")


class LabelConfig(Section):
    """Thresholds of the HS-STaR labels and the DAST levels."""

    tau_h: float = Field(0.7, ge=0, le=1, description="HS-STaR: an all-correct problem is easy when its mean "
                         "process score exceeds this (else boundary).")
    tau_l: float = Field(0.3, ge=0, le=1, description="HS-STaR: an all-wrong problem is too hard when its mean "
                         "process score is below this (else boundary).")
    dast_easy: float = Field(0.75, gt=0, le=1, description="DAST: pass rate at or above which a problem is easy.")
    dast_medium: float = Field(0.25, gt=0, le=1, description="DAST: pass rate at or above which a problem is "
                               "medium; above 0 and below it, hard; 0, unsolved.")
    confidence: float = Field(0.95, gt=0, lt=1, description="Coverage of the pass rate's Wilson interval.")

    @model_validator(mode="after")
    def _ordered(self) -> "LabelConfig":
        if self.tau_l > self.tau_h:
            raise ValueError(f"tau_l={self.tau_l} exceeds tau_h={self.tau_h}: tau_l is the lower threshold")
        if self.dast_medium > self.dast_easy:
            raise ValueError(f"dast_medium={self.dast_medium} exceeds dast_easy={self.dast_easy}: "
                             f"dast_medium is the lower threshold")
        return self


@dataclass(frozen=True)
class ProblemStats:
    problem_id: str
    k: int
    correct: int
    pass_rate: float
    low: float  # Wilson interval of the pass rate
    high: float
    process: Optional[float]  # mean process score of the samples that have one
    tokens: float  # mean generated tokens per sample
    hs_label: HSLabel
    dast_level: DastLevel


def hs_star_label(correct: int, k: int, process: Optional[float], tau_h: float, tau_l: float) -> HSLabel:
    if correct == k:
        return "easy" if process is None or process > tau_h else "boundary"
    if correct == 0:
        return "too_hard" if process is None or process < tau_l else "boundary"
    return "boundary"


def dast_level(pass_rate: float, easy: float, medium: float) -> DastLevel:
    if pass_rate >= easy:
        return "easy"
    if pass_rate >= medium:
        return "medium"
    return "hard" if pass_rate > 0 else "unsolved"


def problem_stats(problem_id: str, correct: Sequence[bool], process: Sequence[Optional[float]],
                  tokens: Sequence[int], config: LabelConfig) -> ProblemStats:
    """One problem's statistics from its k samples (one entry per sample in each sequence)."""
    k = len(correct)
    if k == 0:
        raise ValueError(f"problem {problem_id} has no samples: difficulty needs k >= 1 samples per problem")
    if not len(process) == len(tokens) == k:
        raise ValueError(f"problem {problem_id}: {k} correctness flags, {len(process)} process scores and "
                         f"{len(tokens)} token counts; give one of each per sample")
    hits = sum(bool(c) for c in correct)
    scored = [p for p in process if p is not None]
    mean_process = sum(scored) / len(scored) if scored else None
    low, high = wilson(hits, k, config.confidence)
    return ProblemStats(problem_id, k, hits, hits / k, low, high, mean_process, sum(tokens) / k,
                        hs_star_label(hits, k, mean_process, config.tau_h, config.tau_l),
                        dast_level(hits / k, config.dast_easy, config.dast_medium))


def estimate(samples: Iterable[dict[str, Any]], config: LabelConfig) -> list[ProblemStats]:
    """Per-problem statistics from sample records (``problem_id``, ``correct``, ``process_score``, ``tokens``),
    in order of each problem's first sample."""
    grouped: dict[str, list[dict[str, Any]]] = {}
    for record in samples:
        grouped.setdefault(record["problem_id"], []).append(record)
    return [problem_stats(pid, [r["correct"] for r in rows], [r.get("process_score") for r in rows],
                          [r["tokens"] for r in rows], config) for pid, rows in grouped.items()]


def label_noise(pass_rate: float, k: int) -> dict[str, float]:
    """How a problem solved with probability ``pass_rate`` reads from k independent samples (by correctness)."""
    if not 0 <= pass_rate <= 1 or k < 1:
        raise ValueError(f"pass_rate={pass_rate}, k={k}: need a probability and k >= 1")
    easy, too_hard = pass_rate**k, (1 - pass_rate) ** k
    return {"easy": easy, "too_hard": too_hard, "boundary": 1.0 - easy - too_hard}
