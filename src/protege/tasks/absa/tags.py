"""BIO × polarity tags for the tagger student: aligning character spans to word pieces and back. Pure numpy.

Labels are ``O`` then ``B-<polarity>``, ``I-<polarity>`` for each polarity in task order (for the default
task: O, B-positive, I-positive, B-negative, I-negative, B-neutral, I-neutral).

**Encoding.** A word piece belongs to an aspect when its character range (from the tokenizer's offset mapping)
overlaps the aspect's span. Its first piece is tagged ``B-p``, *every* later piece ``I-p`` — sub-tokens of a
word are labelled rather than masked with -100, so the decoder needs no word boundaries and the loss sees
every piece. Special tokens, padding and zero-width pieces are left out (mask false). Targets are rows of a
distribution over the labels: one-hot for a hard polarity, or ``Σ_p q(p)·[B-p]`` (``I-p`` on later pieces)
when the teacher gives a polarity distribution ``q`` for the aspect. An aspect with no piece left (truncated)
or whose pieces already belong to an earlier aspect (overlapping spans) is counted in ``lost``.

**Decoding.** Each piece takes its most probable tag. A span opens at ``B-*`` (or at an ``I-*`` that follows
``O``: the model's slip is read as a start), continues over ``I-*`` of any polarity and closes at ``O``, at a
new ``B-*`` or at a left-out piece. Its polarity is the majority of its pieces' polarities (ties go to the
larger summed probability), its confidence the mean over its pieces of ``p(B-pol) + p(I-pol)``. Character
offsets run from the first piece's start to the last piece's end, widened to whole words of the sentence so a
span never ends inside a word.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping, Optional, Sequence

import numpy as np

from protege.tasks.absa.task import Aspect

Offsets = Sequence[tuple[int, int]]
_WORD = re.compile(r"\w")


@dataclass(frozen=True)
class TaggedSpan:
    """A span the tagger found, with its polarity and the tagger's confidence in it (0-1)."""

    start: int
    end: int
    polarity: str
    confidence: float

    def aspect(self, sentence: str) -> Aspect:
        return Aspect(self.start, self.end, sentence[self.start : self.end], self.polarity)


def _widen(sentence: str, start: int, end: int) -> tuple[int, int]:
    while 0 < start < len(sentence) and _WORD.match(sentence[start - 1]) and _WORD.match(sentence[start]):
        start -= 1
    while 0 < end < len(sentence) and _WORD.match(sentence[end - 1]) and _WORD.match(sentence[end]):
        end += 1
    return start, end


@dataclass(frozen=True)
class TagScheme:
    polarities: tuple[str, ...]

    @property
    def labels(self) -> list[str]:
        return ["O"] + [f"{bi}-{p}" for p in self.polarities for bi in ("B", "I")]

    def begin(self, k: int) -> int:
        return 1 + 2 * k

    def inside(self, k: int) -> int:
        return 2 + 2 * k

    def encode(
        self,
        offsets: Offsets,
        aspects: Sequence[Aspect],
        keep: Sequence[bool],
        distributions: Optional[Sequence[Optional[Mapping[str, float]]]] = None,
    ) -> tuple[np.ndarray, np.ndarray, int]:
        """``(targets (T, L), mask (T,), lost)`` of one sentence's pieces; ``keep`` marks real text pieces."""
        n, width = len(offsets), len(self.labels)
        mask = np.array([bool(k) and e > s for (s, e), k in zip(offsets, keep)], dtype=bool)
        targets = np.zeros((n, width), dtype=np.float32)
        targets[mask, 0] = 1.0
        owned = np.zeros(n, dtype=bool)
        lost = 0
        for j, aspect in enumerate(aspects):
            pieces = [t for t in range(n)
                      if mask[t] and offsets[t][0] < aspect.end and aspect.start < offsets[t][1]]
            if not pieces or owned[pieces].any():
                lost += 1
                continue
            dist = distributions[j] if distributions is not None and distributions[j] is not None \
                else {aspect.polarity: 1.0}
            unknown = set(dist) - set(self.polarities)
            if unknown:
                raise ValueError(f"polarity distribution names {sorted(unknown)}, not among "
                                 f"{self.polarities}")
            total = sum(dist.values())
            if total <= 0:
                raise ValueError(f"polarity distribution of {aspect.term!r} sums to {total}")
            for i, t in enumerate(pieces):
                targets[t] = 0.0
                for p, q in dist.items():
                    k = self.polarities.index(p)
                    targets[t, self.begin(k) if i == 0 else self.inside(k)] += q / total
            owned[pieces] = True
        return targets, mask, lost

    def decode(self, sentence: str, offsets: Offsets, probs: np.ndarray,
               keep: Sequence[bool]) -> list[TaggedSpan]:
        """Spans of one sentence from its pieces' tag probabilities ``(T, L)``; see the module doc."""
        probs = np.asarray(probs, dtype=np.float64)
        tags = probs.argmax(-1)
        spans: list[TaggedSpan] = []
        current: list[int] = []

        def close() -> None:
            if not current:
                return
            per_polarity = np.stack([probs[current, self.begin(k)] + probs[current, self.inside(k)]
                                     for k in range(len(self.polarities))])  # (P, pieces)
            votes = np.bincount([(tags[t] - 1) // 2 for t in current], minlength=len(self.polarities))
            best = max(range(len(self.polarities)), key=lambda k: (votes[k], per_polarity[k].sum()))
            start, end = _widen(sentence, offsets[current[0]][0], offsets[current[-1]][1])
            spans.append(TaggedSpan(start, end, self.polarities[best], float(per_polarity[best].mean())))
            current.clear()

        for t, (s, e) in enumerate(offsets):
            if not keep[t] or e <= s or tags[t] == 0:
                close()
                continue
            if (tags[t] - 1) % 2 == 0:  # a B- tag starts a new span
                close()
            current.append(t)
        close()
        # Widening can make neighbouring pieces' spans touch the same word: merge those into the first.
        merged: list[TaggedSpan] = []
        for span in spans:
            if merged and span.start < merged[-1].end:
                last = merged.pop()
                span = TaggedSpan(last.start, max(last.end, span.end), last.polarity, last.confidence)
            merged.append(span)
        return merged
