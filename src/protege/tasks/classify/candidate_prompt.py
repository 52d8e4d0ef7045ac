"""Candidate sets from a generating teacher: ask it for every label that could apply to a text, read the answer
as a set of labels.

For a teacher reached only through generation (any OpenAI-compatible server, e.g. a chat API without prompt
log-probabilities), the threshold/mass rule over scored probabilities is replaced by the teacher's own list. The
prompt names each label by its first verbalizer and asks for all plausible ones, comma separated. The parse finds
label words in the answer (case-insensitive, whole words, longer words first so "very positive" is not read as
"positive"); an answer naming no label yields an empty set, which annotate replaces by the scored rule and counts.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from protege.models.base import Prompt, SamplingParams

if TYPE_CHECKING:
    from protege.models.ledgered import LedgeredTeacher
    from protege.tasks.classify.task import ClassificationTask

QUESTION = (
    "Here is a text and a list of labels: {labels}.\n"
    "More than one label may fit when the text is ambiguous or mixed. Write every label that could apply to it, "
    "separated by commas, most likely first, and nothing else.\n\n"
    "Text: {text}"
)
ANSWER_TOKENS = 24  # room for every label of a usual task; the parse ignores anything after the labels


def candidate_prompt(task: "ClassificationTask", text: str) -> Prompt:
    """The question for ``text``: chat messages for a chat task, else a plain prompt ending in the answer prefix."""
    body = QUESTION.format(labels=task.label_words, text=text)
    if task.chat:
        return [{"role": "user", "content": body}]
    return f"{body}\n{task.answer_prefix}"


def parse_candidates(task: "ClassificationTask", answer: str) -> list[int]:
    """Indices of the labels ``answer`` names, through any of their verbalizers or their own names."""
    words = [(w, i) for i, label in enumerate(task.labels) for w in {label, *task.words(label)}]
    found: set[int] = set()
    rest = answer.lower()
    for word, index in sorted(words, key=lambda wi: -len(wi[0])):
        pattern = r"(?<!\w)" + re.escape(word.lower().strip()) + r"(?!\w)"
        if re.search(pattern, rest):
            found.add(index)
            rest = re.sub(pattern, " ", rest)  # consumed: a shorter word inside it must not match again
    return sorted(found)


def ask_candidates(task: "ClassificationTask", teacher: "LedgeredTeacher", texts: list[str]) -> list[list[int]]:
    """Each text's candidate set as the teacher lists it (greedy, one ledgered request per text)."""
    params = SamplingParams(max_new_tokens=ANSWER_TOKENS, temperature=0.0)
    answers = teacher.generate([candidate_prompt(task, t) for t in texts], params)
    return [parse_candidates(task, gens[0].text if gens else "") for gens in answers]
