"""Label refinement by noisy self-training, the pure part: merging a tagger's predictions into the labels.

A student trained (with noise) on seed + synthetic data re-predicts each synthetic sentence. For every current
(teacher) aspect of the sentence:

- the student predicted the same span with the same polarity -> **kept**;
- the student predicted an overlapping span that differs in boundaries or polarity, with confidence ``>=
  threshold`` -> **replaced** by the student's span and polarity;
- otherwise (a less confident overlapping prediction, or none at all) the configured ``fallback`` decides:
  ``keep_teacher`` keeps the teacher's aspect (**kept**), ``drop`` removes it (**dropped**).

A student span overlapping no teacher aspect is **added** when its confidence reaches ``add_threshold`` (None:
never). Among several student spans over one teacher aspect the most overlapping (then most confident) one
answers. The result is ordered by offset and free of overlapping spans (an earlier aspect wins). The summary
counts each outcome and the change rate: (replaced + dropped + added) / teacher aspects.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable, Literal, Optional, Sequence

from pydantic import Field

from protege.core.section import Section
from protege.tasks.absa.tags import TaggedSpan
from protege.tasks.absa.task import Aspect


class RefineConfig(Section):
    """How the student's predictions revise the synthetic labels in a round of noisy self-training."""

    threshold: float = Field(
        0.9, ge=0, le=1, description="Student confidence at or above which it replaces a teacher aspect it "
        "disagrees with (span boundaries or polarity).",
    )
    fallback: Literal["keep_teacher", "drop"] = Field(
        "keep_teacher", description="What to do with a teacher aspect the student disagrees with but is not "
        "confident about (or did not find at all): keep_teacher keeps it, drop removes it.",
    )
    add_threshold: Optional[float] = Field(
        None, ge=0, le=1, description="Student confidence at or above which a span it found and the teacher "
        "did not is added; None never adds.",
    )


@dataclass
class RefineSummary:
    teacher: int = 0  # teacher aspects considered
    kept: int = 0
    replaced: int = 0
    dropped: int = 0
    added: int = 0
    sentences_changed: int = 0
    sentences: int = 0

    @property
    def change_rate(self) -> float:
        return (self.replaced + self.dropped + self.added) / self.teacher if self.teacher else 0.0

    def as_dict(self) -> dict:
        return {**asdict(self), "change_rate": self.change_rate}


def _keep_teacher(teacher: Aspect, summary: RefineSummary) -> Optional[Aspect]:
    summary.kept += 1
    return teacher


def _drop(teacher: Aspect, summary: RefineSummary) -> Optional[Aspect]:
    summary.dropped += 1
    return None


FALLBACKS: dict[str, Callable[[Aspect, RefineSummary], Optional[Aspect]]] = {
    "keep_teacher": _keep_teacher, "drop": _drop,
}


def _overlap(a: Aspect, s: TaggedSpan) -> int:
    return max(0, min(a.end, s.end) - max(a.start, s.start))


def refine_sentence(sentence: str, teacher: Sequence[Aspect], student: Sequence[TaggedSpan],
                    config: RefineConfig, summary: RefineSummary) -> tuple[Aspect, ...]:
    """The revised label of one sentence; outcomes are counted into ``summary``."""
    chosen: list[Aspect] = []
    used: set[int] = set()
    for aspect in teacher:
        summary.teacher += 1
        candidates = [(i, s) for i, s in enumerate(student) if _overlap(aspect, s) > 0]
        used.update(i for i, _ in candidates)
        best = max(candidates, key=lambda c: (_overlap(aspect, c[1]), c[1].confidence), default=None)
        if best is not None and (best[1].start, best[1].end, best[1].polarity) == \
                (aspect.start, aspect.end, aspect.polarity):
            summary.kept += 1
            chosen.append(aspect)
        elif best is not None and best[1].confidence >= config.threshold:
            summary.replaced += 1
            chosen.append(best[1].aspect(sentence))
        else:
            revised = FALLBACKS[config.fallback](aspect, summary)
            if revised is not None:
                chosen.append(revised)
    if config.add_threshold is not None:
        for i, span in enumerate(student):
            if i not in used and span.confidence >= config.add_threshold:
                summary.added += 1
                chosen.append(span.aspect(sentence))
    result: list[Aspect] = []
    for aspect in sorted(chosen):
        if not any(aspect.start < r.end and r.start < aspect.end for r in result):
            result.append(aspect)
    summary.sentences += 1
    summary.sentences_changed += tuple(result) != tuple(sorted(teacher))
    return tuple(result)


def refine_labels(sentences: Sequence[str], teacher: Sequence[Sequence[Aspect]],
                  student: Sequence[Sequence[TaggedSpan]], config: RefineConfig
                  ) -> tuple[list[tuple[Aspect, ...]], RefineSummary]:
    """Revised labels for aligned sentences, teacher labels and student predictions; and the summary."""
    if not len(sentences) == len(teacher) == len(student):
        raise ValueError(f"refine_labels: {len(sentences)} sentences, {len(teacher)} teacher labels and "
                         f"{len(student)} student predictions must align")
    summary = RefineSummary()
    labels = [refine_sentence(s, t, p, config, summary) for s, t, p in zip(sentences, teacher, student)]
    return labels, summary
