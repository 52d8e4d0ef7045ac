"""The ``absa`` task: sentences labelled with (aspect term, polarity) pairs, each tied to a span of it.

An :class:`Aspect` is a term with its polarity and its character span ``[start, end)``;
``sentence[start:end]`` equals the term. An :class:`AbsaExample` is a sentence with its aspects ordered by
offset; an empty tuple is a valid label (many review sentences name no aspect).

:class:`AbsaTask` holds the polarity set and how polarity words are read. SemEval's ``conflict`` polarity
(both positive and negative about one aspect) is dropped by default, as is standard for end-to-end ABSA; with
``drop_conflict: false`` it becomes one more polarity. Teacher words such as ``pos``, ``+`` or ``Good`` are
mapped to the canonical names through built-in synonyms, which a recipe can extend.

Data problems (an unknown polarity, a span that does not match its term, a dropped conflict) are never errors:
they are counted in an :class:`Issues` tally that loaders and normalisation return beside their result.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Literal, Optional

from pydantic import Field, model_validator

from protege.core.section import Section

CONFLICT = "conflict"

# Lower-cased words a teacher or a data file may use for a polarity.
BUILTIN_SYNONYMS: dict[str, str] = {
    **dict.fromkeys(["positive", "pos", "+", "good", "great", "favorable", "favourable"], "positive"),
    **dict.fromkeys(["negative", "neg", "-", "bad", "poor", "unfavorable", "unfavourable"], "negative"),
    **dict.fromkeys(["neutral", "neu", "0", "none", "objective", "neither"], "neutral"),
    **dict.fromkeys(["conflict", "mixed", "both", "ambivalent"], CONFLICT),
}


@dataclass(frozen=True, order=True)
class Aspect:
    """One labelled aspect; ordering by (start, end) is the canonical order of a label."""

    start: int
    end: int
    term: str
    polarity: str

    def as_dict(self) -> dict:
        """The SemEval shape: ``{"from", "to", "target", "polarity"}``."""
        return {"from": self.start, "to": self.end, "target": self.term, "polarity": self.polarity}


@dataclass(frozen=True)
class AbsaExample:
    """A sentence and its aspects (ordered by offset); ``id`` is unique within its dataset."""

    id: str
    sentence: str
    aspects: tuple[Aspect, ...] = ()

    @property
    def polarities(self) -> set[str]:
        return {a.polarity for a in self.aspects}


@dataclass
class Issues:
    """Counts of data issues by kind, with the first few instances of each kept as examples for the report."""

    counts: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)
    keep: int = 3

    def add(self, kind: str, detail: str = "", n: int = 1) -> None:
        self.counts[kind] += n
        shown = self.examples.setdefault(kind, [])
        if detail and len(shown) < self.keep:
            shown.append(detail)

    def merge(self, other: "Issues") -> "Issues":
        for kind, n in other.counts.items():
            self.counts[kind] += n
            shown = self.examples.setdefault(kind, [])
            shown.extend(other.examples.get(kind, [])[: max(0, self.keep - len(shown))])
        return self

    def __bool__(self) -> bool:
        return bool(+self.counts)

    def summary(self) -> dict[str, dict]:
        """``{kind: {"count": n, "examples": [...]}}``, most frequent first."""
        return {k: {"count": n, "examples": self.examples.get(k, [])} for k, n in self.counts.most_common()}


class AbsaTask(Section):
    """Aspect-based sentiment: which aspect terms a sentence names and the polarity expressed about each."""

    kind: Literal["absa"] = Field("absa", description="The task kind.")
    polarities: list[str] = Field(
        default_factory=lambda: ["positive", "negative", "neutral"], min_length=2,
        description="Polarity names, in the order that defines polarity indices (tagger labels, confusion "
        "table).",
    )
    drop_conflict: bool = Field(
        True, description="Drop aspects labelled 'conflict' (standard for end-to-end ABSA); false keeps "
        "'conflict' as one more polarity.",
    )
    synonyms: dict[str, str] = Field(
        default_factory=dict,
        description="Extra words read as a polarity, e.g. {favorable: positive}; matched case-insensitively, "
        "on top of the built-in ones (pos, +, good -> positive; neg, -, bad -> negative; neu -> neutral; "
        "mixed -> conflict).",
    )

    @model_validator(mode="after")
    def _check(self) -> "AbsaTask":
        if len({p.lower() for p in self.polarities}) != len(self.polarities):
            raise ValueError(f"task.polarities has duplicates: {self.polarities}")
        if any(p != p.lower() or not p.strip() for p in self.polarities):
            raise ValueError(f"task.polarities must be lower-case words, got {self.polarities}")
        allowed = set(self.labels) | {CONFLICT}
        bad = {w: p for w, p in self.synonyms.items() if p not in allowed}
        if bad:
            raise ValueError(f"task.synonyms maps to unknown polarities {bad}; use one of {sorted(allowed)}")
        return self

    @property
    def labels(self) -> tuple[str, ...]:
        """The polarities an aspect may carry: ``polarities``, plus ``conflict`` when it is kept."""
        keep = not self.drop_conflict and CONFLICT not in self.polarities
        return tuple(self.polarities) + ((CONFLICT,) if keep else ())

    def read_polarity(self, word: object, issues: Optional[Issues] = None, where: str = "") -> Optional[str]:
        """The canonical polarity of ``word``, or None (counted in ``issues``) when unknown or dropped."""
        text = str(word).strip().strip("'\"").strip().lower() if word is not None else ""
        table = {**BUILTIN_SYNONYMS, **{p: p for p in self.polarities},
                 **{k.lower(): v for k, v in self.synonyms.items()}}
        canonical = table.get(text)
        if canonical is not None and canonical in self.labels:
            return canonical
        if issues is not None:
            kind = "conflict_dropped" if canonical == CONFLICT else "unknown_polarity"
            issues.add(kind, f"{where}: {word!r}" if where else repr(word))
        return None
