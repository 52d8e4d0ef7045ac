"""The absa family's prompts (our own wording, from DS²-ABSA's description of each step) and answer shape.

Every synthesis prompt asks for the same answer: a line ``Sentence: ...`` then a line ``Aspects: [[term,
polarity], ...]``; :func:`read_written` takes the sentence out and parses the pairs with
:func:`~protege.tasks.absa.parse.parse_pairs`, never raising. Prompts are chat messages (one user turn), so
any instruct teacher renders them with its own template.

- key-point stream: :func:`brainstorm_prompt` (lists of subjects, aspect terms and opinion words for a domain)
  and :func:`keypoint_prompt` (a sentence combining sampled aspects, opinions and a sentiment pattern);
- instance stream: :func:`instance_prompt` for paraphrase_one, paraphrase_comb, aspect_mask, context_mask;
- annotation: :func:`polarity_prompt` (scored: the polarity word after it) and :func:`pairs_prompt`
  (few-shot extraction of the pairs of a sentence).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Optional, Sequence

from protege.models.base import Message
from protege.tasks.absa.parse import Parsed, parse_pairs
from protege.tasks.absa.task import AbsaExample

MASK = "[MASK]"
ANSWER_FORMAT = (
    "Answer with exactly two lines:\nSentence: <the sentence>\nAspects: <a JSON list of "
    '["aspect term", "polarity"] pairs, each term copied word for word from the sentence>'
)
PATTERNS = {
    "consistent": "every aspect gets the sentiment listed for it, stated plainly",
    "mixed": "the aspects get different sentiments, contrasted in one sentence (e.g. with 'but')",
    "implicit": "the sentiment is implied by facts or consequences, without an explicit opinion word",
}


def _user(text: str) -> list[Message]:
    return [{"role": "user", "content": text}]


def pairs_text(example: AbsaExample) -> str:
    return json.dumps([[a.term, a.polarity] for a in example.aspects], ensure_ascii=False)


def brainstorm_prompt(domain: str, what: str, n: int) -> list[Message]:
    return _user(
        f"We are collecting customer reviews about {domain}. List {n} different {what}, one per line, "
        "with no numbering and no explanations."
    )


def keypoint_prompt(
    domain: str, subject: str, pairs: Sequence[tuple[str, str]], opinions: Sequence[str], pattern: str
) -> list[Message]:
    wanted = "; ".join(f"'{term}' ({polarity})" for term, polarity in pairs)
    hint = (
        f" You may use opinion words such as: {', '.join(opinions)}."
        if opinions and pattern != "implicit"
        else ""
    )
    return _user(
        f"Write one realistic customer review sentence about {domain}, about a {subject}. It must mention "
        f"these aspects with these sentiments: {wanted}. Sentiment pattern: {PATTERNS[pattern]}.{hint}\n"
        f"{ANSWER_FORMAT}"
    )


def _seed_block(example: AbsaExample) -> str:
    return f"Sentence: {example.sentence}\nAspects: {pairs_text(example)}"


def mask_aspects(example: AbsaExample) -> str:
    """The sentence with every aspect term replaced by the mask."""
    out, last = [], 0
    for a in example.aspects:
        out += [example.sentence[last : a.start], MASK]
        last = a.end
    return "".join(out + [example.sentence[last:]])


def context_windows(example: AbsaExample, width: int) -> list[tuple[int, int]]:
    """Character spans of every run of ``width`` consecutive words touching no aspect (shorter runs when the
    sentence has none that long): the places a context mask may cover."""
    words = [(m.start(), m.end()) for m in re.finditer(r"\S+", example.sentence)]
    free = [not any(s < a.end and a.start < e for a in example.aspects) for s, e in words]
    for size in range(width, 0, -1):
        spans = [
            (words[i][0], words[i + size - 1][1])
            for i in range(len(words) - size + 1)
            if all(free[i : i + size])
        ]
        if spans:
            return spans
    return []


def mask_span(sentence: str, span: tuple[int, int]) -> str:
    return sentence[: span[0]] + MASK + sentence[span[1] :]


def instance_prompt(method: str, seeds: Sequence[AbsaExample], masked: str = "") -> list[Message]:
    """The instance-stream prompt of ``method`` written from ``seeds`` (two for paraphrase_comb)."""
    first = seeds[0]
    if method == "paraphrase_one":
        body = (
            "Rewrite this review sentence in different words. Keep every aspect and the sentiment about it; "
            f"aspect terms may change slightly if the meaning stays.\n{_seed_block(first)}"
        )
    elif method == "paraphrase_comb":
        body = (
            "Write one new review sentence that joins the aspects and sentiments of these two review "
            f"sentences naturally.\n{_seed_block(first)}\n{_seed_block(seeds[1])}"
        )
    elif method == "aspect_mask":
        body = (
            f"In this review sentence each {MASK} hides an aspect term. Replace every {MASK} with a new, "
            "different aspect term that fits the product, keeping the sentiment it had: "
            f"{', '.join(a.polarity for a in first.aspects)} in order.\n{masked}"
        )
    elif method == "context_mask":
        body = (
            f"In this review sentence {MASK} hides some words. Write a full new sentence in which the {MASK} "
            "is filled with different words, keeping the aspect terms and their sentiments "
            f"{pairs_text(first)}.\n{masked}"
        )
    else:
        raise ValueError(f"unknown instance method {method!r}")
    return _user(f"{body}\n{ANSWER_FORMAT}")


def polarity_prompt(sentence: str, term: str, polarities: Sequence[str]) -> list[Message]:
    return _user(
        f'Review: {sentence}\nWhat sentiment does the reviewer express about "{term}"? Answer with one '
        f"word: {', '.join(polarities)}."
    )


def pairs_prompt(sentence: str, shots: Sequence[AbsaExample], polarities: Sequence[str]) -> list[Message]:
    lines = [
        "Find the aspect terms of a review sentence (words naming a part or property of the product or "
        f"service) and the sentiment about each ({', '.join(polarities)}). Answer with a JSON list of "
        '["aspect term", "polarity"] pairs, [] when there is none.'
    ]
    for shot in shots:
        lines.append(f"Sentence: {shot.sentence}\nAspects: {pairs_text(shot)}")
    lines.append(f"Sentence: {sentence}\nAspects:")
    return _user("\n\n".join(lines))


@dataclass
class Written:
    sentence: Optional[str]
    parsed: Parsed


_SENTENCE = re.compile(r"^\s*\**\s*sentence\s*\**\s*:\s*\**\s*(.+)$", re.IGNORECASE | re.MULTILINE)
_ASPECTS = re.compile(
    r"^\s*\**\s*(?:aspects|labels|pairs)\s*\**\s*:\s*\**\s*(.*)$", re.IGNORECASE | re.MULTILINE | re.DOTALL
)


def read_written(text: str) -> Written:
    """The new sentence and its parsed pairs from a synthesis answer; ``sentence`` None when there is none."""
    text = text or ""
    found = _SENTENCE.search(text)
    sentence = found.group(1).strip().strip('"').strip() if found else None
    if sentence is None:
        first = next((line.strip() for line in text.splitlines() if line.strip()), "")
        sentence = first if first and "[" not in first else None
    label = _ASPECTS.search(text)
    return Written(sentence or None, parse_pairs(label.group(1)) if label else Parsed())


def analysis_prompt(review: str) -> list[Message]:
    """Ask for a structured sentiment analysis of a whole review (the rationale :mod:`rationale_text` reads)."""
    return _user(
        "Examine the sentiment of this customer review. For every opinion target (the thing the reviewer "
        "judges), write four lines:\n"
        "Opinion Target: <the words of the review naming it>\n"
        "Aspect: <the property judged, e.g. price, service, battery life>\n"
        "Sentiment: <one of: very negative, negative, neutral, positive, very positive>\n"
        "Reasoning: <one sentence on why; say so when the sentiment is implied rather than stated>\n"
        "Leave a blank line between targets. End with one line: Overall: <one of the five levels>.\n"
        f"Review: {review}"
    )


def rewrite_prompt(review: str) -> list[Message]:
    """Ask for a first-person rewrite that states the reviewer's feelings outright."""
    return _user(
        "Rewrite this customer review in the first person, as the reviewer. Keep every fact, and state "
        "plainly how you feel about each thing mentioned, including feelings the review only implies. "
        f"Write one paragraph, with no title and no comments.\nReview: {review}"
    )
