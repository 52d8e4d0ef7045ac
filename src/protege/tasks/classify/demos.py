"""Demonstrations for in-context classification: which pool texts to show, and the prompts that show them.

Two kinds of prompt, both scored like the family's zero-shot prompt (every verbalizer as the continuation):

* **plain ICL** (:func:`plain_prompts`): the task's own prompts with the demonstrations as ``task.few_shot``
  (earlier user/assistant turns in chat, answered blocks in plain text), one prompt per template.
* **feedback ICL** (:func:`feedback_prompt`): demonstrations the teacher got *wrong* come first, each with the
  teacher's first answer, the correct label and a corrective note; then ones it got right with a confirming note;
  the text to classify ends the prompt after ``Correct label:``.

:func:`feedback_choice` walks down a similarity ranking of the pool: the first ``wrong_first`` wrongly answered
texts, then correctly answered ones up to ``shots``. When the pool has fewer wrong texts than asked, correct ones
take their places and are counted as *fills*. The wording below is protege's own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from protege.models.base import Prompt
from protege.tasks.classify.task import ClassificationTask, FewShotExample, render_all

FEEDBACK_INTRO = ("Each text below was labelled once before. You see that first answer, the correct label and a "
                  "note on it. Learn from the mistakes, then give the correct label of the last text.")
CORRECTIVE = "The first answer, {first}, was wrong: this text is {gold}."
CONFIRMING = "The first answer was right: this text is {gold}."
ANSWER_CUE = "Correct label:"


@dataclass(frozen=True)
class Demo:
    """A pool text shown as a demonstration, with the teacher's first answer on it (feedback ICL only)."""

    text: str
    gold: int
    first: int | None = None


def clip(text: str, chars: int) -> str:
    """A demonstration cut to ``chars`` characters at a word boundary (demonstrations are prompt cost)."""
    if len(text) <= chars:
        return text
    cut = text[:chars].rsplit(" ", 1)[0]
    return (cut or text[:chars]) + " ..."


def plain_prompts(task: ClassificationTask, demos: Sequence[Demo], text: str) -> list[Prompt]:
    """One prompt per task template, the demonstrations shown as answered examples before ``text``."""
    shots = [FewShotExample(text=d.text, label=task.labels[d.gold]) for d in demos]
    return render_all(task.model_copy(update={"few_shot": shots}), text)


def _word(task: ClassificationTask, index: int) -> str:
    return task.words(task.labels[index])[0]


def feedback_prompt(task: ClassificationTask, demos: Sequence[Demo], text: str) -> Prompt:
    """Wrong-first demonstrations with their first answers and notes, then ``text`` awaiting its label."""
    blocks = [task.instruction.format(labels=task.label_words), FEEDBACK_INTRO]
    for demo in demos:
        if demo.first is None:
            raise ValueError("a feedback demonstration needs the teacher's first answer (Demo.first)")
        first, gold = _word(task, demo.first), _word(task, demo.gold)
        note = (CONFIRMING if demo.first == demo.gold else CORRECTIVE).format(first=first, gold=gold)
        blocks.append(f"Text: {demo.text}\nFirst answer: {first}\n{ANSWER_CUE} {gold}\nNote: {note}")
    blocks.append(f"Text: {text}\n{ANSWER_CUE}")
    body = "\n\n".join(blocks)
    return [{"role": "user", "content": body}] if task.chat else body


def feedback_choice(ranking: Sequence[int], correct: np.ndarray, shots: int, wrong_first: int) -> tuple[list[int], int]:
    """Pool positions to show (wrong ones first, each group in ranking order) and how many slots meant for a wrong
    demonstration a correct one filled."""
    wrong = [j for j in ranking if not correct[j]][:wrong_first]
    right = [j for j in ranking if correct[j]][: shots - len(wrong)]
    return wrong + right, wrong_first - len(wrong)
