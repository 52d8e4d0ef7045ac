"""Teacher rationales as text: cleaning, reading structured analyses, and their overall polarity. Never raises.

A *rationale* is what a teacher wrote about a review (FSA distillation's corpus): either an **analysis** —
one block per opinion target with its aspect, a five-level sentiment and the reasoning — or a first-person
**rewrite** that states the reviewer's feelings outright.

:func:`clean` cuts the run-on text small and mid-size models append after their answer (a new ``Review:`` or
``Consider the following reviews:`` they invent, chat-template tokens, ``Response:``/``Consent:``/``ID:``
blocks, a line repeated word for word) and says what it cut; a text shorter than the minimum is flagged, not
dropped, so the row stays in the table as it came.

:func:`parse_analysis` reads ``Key: value`` lines — ``Opinion Target``, ``Aspect``, ``Sentiment``,
``Reasoning`` (markdown bold, bullets and numbering tolerated) — into :class:`Opinion` blocks. A new block
starts at a target line, or when a key repeats inside the current block. Sentiment words map to five levels
(:data:`LEVELS`, scored −2..2): ``very/extremely/strongly`` + polarity is ±2, ``mildly/slightly/somewhat`` +
polarity or the polarity alone is ±1, ``neutral``/``mixed`` is 0; a word with no polarity (``Mild``) has no
level and is counted. An analysis is *parsed* when at least one opinion has a level. Its overall polarity is an
explicit ``Overall: <level>`` line when there is one, else the sign of the sum of the opinions' levels.

:func:`star_polarity` reads a 1–5 star rating as negative (1–2), neutral (3) or positive (4–5), the reference
the overall polarity is compared with when no gold label exists.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Optional

LEVELS = ("very negative", "negative", "neutral", "positive", "very positive")
LEVEL_SCORE = {name: i - 2 for i, name in enumerate(LEVELS)}
KINDS = ("analysis", "rewrite")

_STRONG = ("very", "extremely", "strongly", "highly", "overwhelmingly", "intensely", "deeply", "really")
_WEAK = ("mild", "mildly", "slightly", "somewhat", "moderately", "weakly", "fairly", "a bit", "rather")
_POLAR = {"positive": 1, "negative": -1, "favorable": 1, "favourable": 1, "unfavorable": -1,
          "unfavourable": -1}
_NEUTRAL = ("neutral", "mixed", "objective", "ambivalent", "balanced")

# Lines that begin text the teacher was not asked for. Matched at a line start, after some answer.
_RUN_ON = re.compile(
    r"^[ \t]*(?:#+[ \t]*)?\**[ \t]*(?:(?:review|consider the following|response|consent|id|user|assistant|human|"
    r"instruction|input|output|examples?|question|new review|next review|solution|your task|task|"
    r"answer the question)\b[^\n:]{0,20}:|let's analy[sz]e another|-{3,}[ \t]*$)",
    re.IGNORECASE | re.MULTILINE,
)
_CHAT_TOKENS = re.compile(r"<\|im_(?:start|end)\|>|<\|endoftext\|>|</s>|\[/?INST\]|<\|eot_id\|>")
_KEY_LINE = re.compile(
    r"^[ \t]*(?:[-*•]|\d+[.)])?[ \t]*\**[ \t]*(opinion target|target|aspect|sentiment(?: level)?|polarity|"
    r"reasoning|reason|overall(?: sentiment)?)(?:[ \t]*\d+)?[ \t]*\**[ \t]*:[ \t]*\**[ \t]*(.*?)[ \t]*\**[ \t]*$",
    re.IGNORECASE,
)
_FIELD = {"opinion target": "target", "target": "target", "aspect": "aspect", "sentiment": "sentiment",
          "sentiment level": "sentiment", "polarity": "sentiment", "reasoning": "reasoning", "reason": "reasoning"}


@dataclass(frozen=True)
class Cleaned:
    text: str
    cut: Optional[str]  # what was cut: "run_on", "chat_token", "repeat"; None when nothing was
    too_short: bool


def _first_repeat(text: str, min_len: int = 60) -> Optional[int]:
    """Offset of the first line that repeats an earlier line word for word (a generation loop)."""
    seen, offset = set(), 0
    for line in text.splitlines(keepends=True):
        key = line.strip()
        if len(key) >= min_len and key in seen:
            return offset
        seen.add(key)
        offset += len(line)
    return None


def clean(text: Optional[str], min_chars: int = 40) -> Cleaned:
    """``text`` without the run-on tail, stripped; ``too_short`` when fewer than ``min_chars`` remain."""
    text = (text or "").strip()
    cuts = []
    token = _CHAT_TOKENS.search(text)
    if token:
        cuts.append((token.start(), "chat_token"))
    for found in _RUN_ON.finditer(text):
        if text[: found.start()].strip():  # a marker before any answer is a heading, not run-on text
            cuts.append((found.start(), "run_on"))
            break
    repeat = _first_repeat(text)
    if repeat is not None:
        cuts.append((repeat, "repeat"))
    cut = None
    if cuts:
        at, cut = min(cuts)
        text = text[:at].rstrip()
    return Cleaned(text, cut, len(text) < min_chars)


def read_level(word: str) -> Optional[str]:
    """One of :data:`LEVELS` for a sentiment word or phrase (``Very Positive``, ``mildly negative``), else None."""
    text = re.sub(r"[^a-z ]+", " ", (word or "").lower())
    words = text.split()
    polar = [(_POLAR[w], i) for i, w in enumerate(words) if w in _POLAR]
    if polar:
        sign, at = polar[0]
        before = " ".join(words[max(0, at - 2): at])
        strong = any(re.search(rf"\b{s}\b", before) for s in _STRONG)
        return LEVELS[2 + sign * (2 if strong else 1)]
    if any(w in _NEUTRAL for w in words):
        return "neutral"
    return None


@dataclass
class Opinion:
    target: str = ""
    aspect: str = ""
    sentiment: str = ""  # as written
    level: Optional[str] = None  # one of LEVELS, None when the sentiment word has no polarity
    reasoning: str = ""


@dataclass
class Analysis:
    opinions: list[Opinion] = field(default_factory=list)
    overall: Optional[str] = None  # negative / neutral / positive; None when nothing had a level
    stated_overall: bool = False  # an explicit Overall line gave it
    unreadable: int = 0  # opinions whose sentiment word had no level

    @property
    def structured(self) -> bool:
        """The text has the analysis shape (at least one sentiment line)."""
        return bool(self.opinions)

    @property
    def parsed(self) -> bool:
        return any(o.level is not None for o in self.opinions)

    def as_dicts(self) -> list[dict]:
        return [asdict(o) for o in self.opinions]


def _sign(score: float) -> str:
    return "positive" if score > 0 else "negative" if score < 0 else "neutral"


def parse_analysis(text: Optional[str]) -> Analysis:
    """The opinion blocks of an analysis and its overall polarity (see the module notes)."""
    out, current, last = Analysis(), {}, None
    stated: Optional[str] = None

    def flush() -> None:
        if "sentiment" in current:
            level = read_level(current["sentiment"])
            out.opinions.append(Opinion(current.get("target", "").strip("'\" "), current.get("aspect", "").strip(
                "'\" "), current["sentiment"], level, current.get("reasoning", "")))
            out.unreadable += level is None
        current.clear()

    for line in (text or "").splitlines():
        found = _KEY_LINE.match(line)
        if not found:
            if last == "reasoning" and line.strip():
                current["reasoning"] = f"{current['reasoning']} {line.strip()}"
            continue
        key, value = found.group(1).lower(), found.group(2)
        if key.startswith("overall"):
            stated = stated or read_level(value)
            last = None
            continue
        name = _FIELD[key]
        if name in current or (name == "target" and current):
            flush()
        current[name], last = value, name
    flush()
    if stated is not None:
        out.overall, out.stated_overall = _sign(LEVEL_SCORE[stated]), True
    elif out.parsed:
        out.overall = _sign(sum(LEVEL_SCORE[o.level] for o in out.opinions if o.level is not None))
    return out


def kind_of(text: str) -> str:
    """``analysis`` when the text has the analysis shape, else ``rewrite``."""
    return "analysis" if parse_analysis(text).structured else "rewrite"


def star_polarity(rating: Optional[float]) -> Optional[str]:
    """negative (1–2 stars), neutral (3), positive (4–5); None without a rating."""
    if rating is None or rating != rating:  # NaN: a row without a rating
        return None
    return "negative" if rating < 2.5 else "positive" if rating > 3.5 else "neutral"
