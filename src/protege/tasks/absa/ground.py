"""Grounding aspect terms to spans of their sentence, and normalising a teacher's raw pairs into a label.

:func:`ground_term` finds where a term sits in a sentence, trying in order:

1. ``exact``: the term as written, starting at a word start. A match that ends inside a word is extended to
   the word's end, so ``light`` grounds to ``lights`` and ``charge`` to ``charger`` (the teacher dropped an
   inflection); a match ending on a word boundary is preferred over one that needs extending.
2. ``case``: the same, ignoring case (``Support`` -> ``support``).
3. ``tokens``: the longest run of sentence tokens that also occurs, in order and contiguously, among the
   term's tokens (case-insensitive), after trimming stopwords from both ends; the run must hold a content
   word, so ``wine selection`` never grounds to a stray ``in``. Ties go to the earliest run in the sentence.
   E.g. ``glass screen`` in "The screen made of glass" grounds to ``screen``.

A term the sentence does not contain in any of these ways is not grounded. Spans already taken by earlier
pairs of the same answer are skipped, so a term listed twice grounds to its two occurrences.

:func:`normalise` turns raw pairs into an ordered, de-duplicated tuple of :class:`Aspect`: polarity words read
through the task's synonyms, terms grounded, pairs sorted by offset, and a second pair on an already labelled
span dropped. What it changed or dropped is counted by kind in the returned :class:`Issues`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable, Optional, Sequence

from protege.tasks.absa.task import AbsaTask, Aspect, Issues

Span = tuple[int, int]

_TOKEN = re.compile(r"\w+(?:['’-]\w+)*|[^\w\s]")
_WORD_CHAR = re.compile(r"\w")

# Function words that cannot carry an aspect on their own (they may sit inside a multi-word term).
STOPWORDS = frozenset("""
a an the this that these those it its it's they them their there here i me my we our you your he she his her
and or but nor so yet if then than as of in on at to for from by with without about into onto over under after
before during up down out off again very too quite really just also only even still not no is are was were be
been being am do does did doing have has had having will would shall should can could may might must
what which who whom whose when where why how all any both each few more most other some such own same
""".split())


def tokens(text: str) -> list[tuple[str, int, int]]:
    """Words (with inner apostrophes and hyphens) and single punctuation marks, with their character spans."""
    return [(m.group(), m.start(), m.end()) for m in _TOKEN.finditer(text)]


def _is_word_start(text: str, i: int) -> bool:
    return i == 0 or not _WORD_CHAR.match(text[i - 1]) or not _WORD_CHAR.match(text[i])


def _word_end(text: str, i: int) -> int:
    while 0 < i < len(text) and _WORD_CHAR.match(text[i - 1]) and _WORD_CHAR.match(text[i]):
        i += 1
    return i


def _overlaps(span: Span, taken: Iterable[Span]) -> bool:
    return any(span[0] < e and s < span[1] for s, e in taken)


def _find(sentence: str, term: str, haystack: str, needle: str, taken: Sequence[Span]) -> Optional[Span]:
    """First occurrence of ``needle`` in ``haystack`` at a word start; whole-word matches before extended."""
    extended: Optional[Span] = None
    start = haystack.find(needle)
    while start >= 0:
        if _is_word_start(sentence, start):
            end = start + len(needle)
            word_end = _word_end(sentence, end)
            if not _overlaps((start, word_end), taken):
                if word_end == end:
                    return start, end
                extended = extended or (start, word_end)
        start = haystack.find(needle, start + 1)
    return extended


def _token_run(sentence: str, term: str, taken: Sequence[Span]) -> Optional[Span]:
    sent = tokens(sentence)
    words = [t[0].lower() for t in sent]
    term_words = [t[0].lower() for t in tokens(term)]
    best: Optional[tuple[int, int, int]] = None  # (length, -start token, end token)
    for i in range(len(words)):
        for j in range(len(term_words)):
            k = 0
            while i + k < len(words) and j + k < len(term_words) and words[i + k] == term_words[j + k]:
                k += 1
            lo, hi = i, i + k  # trim stopwords and punctuation from both ends of the common run
            while lo < hi and (words[lo] in STOPWORDS or not _WORD_CHAR.match(words[lo])):
                lo += 1
            while hi > lo and (words[hi - 1] in STOPWORDS or not _WORD_CHAR.match(words[hi - 1])):
                hi -= 1
            if hi == lo or _overlaps((sent[lo][1], sent[hi - 1][2]), taken):
                continue
            key = (hi - lo, -lo, hi)
            if best is None or key > best:
                best = key
    if best is None:
        return None
    return sent[-best[1]][1], sent[best[2] - 1][2]


GROUNDERS = ("exact", "case", "tokens")


def ground_term(sentence: str, term: str, taken: Sequence[Span] = ()) -> tuple[Optional[Span], str]:
    """``((start, end), how)`` for ``term`` in ``sentence`` avoiding ``taken``, or ``(None, "ungrounded")``.

    ``how`` is the first of :data:`GROUNDERS` that succeeded (see the module doc).
    """
    term = " ".join(str(term).split())
    if not term:
        return None, "ungrounded"
    span = _find(sentence, term, sentence, term, taken)
    if span is not None:
        return span, "exact"
    # Lower-casing must keep offsets (a few characters, e.g. 'İ', change length when lowered).
    lowered = sentence.lower()
    span = _find(sentence, term, lowered, term.lower(), taken) if len(lowered) == len(sentence) else None
    if span is not None:
        return span, "case"
    span = _token_run(sentence, term, taken)
    if span is not None:
        return span, "tokens"
    return None, "ungrounded"


@dataclass
class Normalised:
    aspects: tuple[Aspect, ...]
    issues: Issues = field(default_factory=Issues)
    kept_verbatim: int = 0  # raw pairs that survive with the same term text and polarity word


def normalise(sentence: str, pairs: Iterable[Sequence], task: AbsaTask, where: str = "") -> Normalised:
    """Raw (term, polarity) pairs -> grounded, synonym-mapped, offset-ordered, de-duplicated aspects.

    Issue kinds counted: ``unknown_polarity``, ``conflict_dropped``, ``ungrounded``, ``duplicate_span``
    (every place the term grounds to overlaps a span already labelled: dropped), and ``grounded_case`` /
    ``grounded_tokens`` / ``grounded_extended`` (kept, text changed).
    """
    issues = Issues()
    found: list[Aspect] = []
    verbatim = 0
    for pair in pairs:
        term, word = (str(pair[0]), pair[1]) if len(pair) >= 2 else (str(pair[0]) if pair else "", None)
        polarity = task.read_polarity(word, issues, where=f"{where} {term!r}".strip())
        if polarity is None:
            continue
        taken = [(a.start, a.end) for a in found]
        span, how = ground_term(sentence, term, taken)
        if span is None:
            # A repeated term whose occurrences are all labelled is a duplicate, not a grounding failure.
            again, _ = ground_term(sentence, term)
            issues.add("duplicate_span" if again is not None else "ungrounded", f"{where} {term!r}".strip())
            continue
        text = sentence[span[0] : span[1]]
        if how != "exact":
            issues.add(f"grounded_{how}", f"{term!r} -> {text!r}")
        elif text != " ".join(term.split()):
            issues.add("grounded_extended", f"{term!r} -> {text!r}")
        if text == term and polarity == str(word).strip():
            verbatim += 1
        found.append(Aspect(span[0], span[1], text, polarity))
    return Normalised(tuple(sorted(found)), issues, verbatim)
