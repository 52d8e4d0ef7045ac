"""The ``classification`` task: label names, the words that stand for them, and the prompts that ask for them.

A teacher classifies by scoring: for a text, each prompt template is rendered once and every verbalizer (the
word or words whose log-probability stands for a label) is scored as the continuation of that prompt. A label
with several verbalizers gets the log of their summed probabilities. Rendering is pure, so the same text
always gives the same prompt, and the ledger recognises it.
"""

from __future__ import annotations

from typing import Literal, Sequence

from pydantic import Field, model_validator

from protege.core.errors import UserError
from protege.models.base import Prompt
from protege.core.section import Section, check_template
from protege.models.calibration import group_scores


class FewShotExample(Section):
    """A demonstration shown before the text to classify."""

    text: str = Field(description="The example text.")
    label: str = Field(description="Its label; one of the task's labels.")


class ClassificationTask(Section):
    """What to classify into and how to ask the teacher."""

    kind: Literal["classification"] = Field("classification", description="The task kind.")
    labels: list[str] = Field(
        min_length=2, description="Label names, in the order that defines label indices."
    )
    verbalizers: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Words scored for each label, e.g. {positive: [great, good]}; a label left out is "
        "verbalized by its own name. In plain (non-chat) prompts each word is scored after one space.",
    )
    instruction: str = Field(
        "Classify the text as one of: {labels}. Answer with one word.",
        description="Instruction placed before the text; {labels} becomes the comma-separated label words.",
    )
    templates: list[str] = Field(
        default_factory=lambda: ["{instruction}\n\nText: {text}"],
        min_length=1,
        description="How a text is shown, with {instruction}, {text} and {labels} placeholders. Several "
        "templates form a prompt ensemble: the teacher's label log-probabilities are averaged over them.",
    )
    few_shot: list[FewShotExample] = Field(
        default_factory=list, description="Demonstrations shown before every text (each costs prompt tokens)."
    )
    chat: bool = Field(
        True,
        description="Render prompts as chat messages through the teacher's chat template (instruct models); "
        "false renders plain text ending in answer_prefix (base models).",
    )
    answer_prefix: str = Field("Answer:", description="Plain prompts only: the text the label word follows.")

    @model_validator(mode="after")
    def _check(self) -> "ClassificationTask":
        if len(set(self.labels)) != len(self.labels):
            raise ValueError(f"task.labels has duplicates: {self.labels}")
        unknown = sorted(set(self.verbalizers) - set(self.labels))
        if unknown:
            raise ValueError(f"task.verbalizers names labels that are not in task.labels: {unknown}")
        for label, words in self.verbalizers.items():
            if not words or any(not w.strip() for w in words):
                raise ValueError(f"task.verbalizers[{label!r}] must be a non-empty list of non-empty words")
        for example in self.few_shot:
            if example.label not in self.labels:
                raise ValueError(f"task.few_shot label {example.label!r} is not one of {self.labels}")
        for template in self.templates:
            if "{text}" not in template:
                raise ValueError(f"task.templates entry {template!r} has no {{text}} placeholder")
        # Render every prompt once against a sample text: a stray brace fails here, not at the first teacher call.
        instruction = check_template(self.instruction, {"labels": self.label_words}, "task.instruction")
        for i, template in enumerate(self.templates):
            check_template(template, {"instruction": instruction, "text": "sample text", "labels": self.label_words},
                           f"task.templates[{i}]")
        return self

    def words(self, label: str) -> list[str]:
        return self.verbalizers.get(label) or [label]

    @property
    def label_words(self) -> str:
        """The first verbalizer of every label, as the prompt lists them."""
        return ", ".join(self.words(label)[0] for label in self.labels)


def continuations(task: ClassificationTask) -> list[str]:
    """Every verbalizer of every label, flattened in label order, as scored after a prompt."""
    lead = "" if task.chat else " "
    return [lead + word for label in task.labels for word in task.words(label)]


def label_of_continuation(task: ClassificationTask) -> list[int]:
    """For each entry of :func:`continuations`, the index of the label it stands for."""
    return [i for i, label in enumerate(task.labels) for _ in task.words(label)]


def label_scores(task: ClassificationTask, word_scores: Sequence[float]) -> list[float]:
    """Per-label log-probability: log of the summed probabilities of that label's verbalizers."""
    return group_scores(word_scores, label_of_continuation(task), len(task.labels))


def _body(task: ClassificationTask, template: str, text: str) -> str:
    instruction = task.instruction.format(labels=task.label_words)
    return template.format(instruction=instruction, text=text, labels=task.label_words)


def render(task: ClassificationTask, text: str, template: int = 0) -> Prompt:
    """The prompt asking for the label of ``text`` with template number ``template``.

    Chat: few-shot examples become earlier user/assistant turns, so the answer the teacher is scored on sits
    exactly where its demonstrations' answers sat. Plain: examples and the text are blocks ending in
    ``answer_prefix``.
    """
    form = task.templates[template]
    if task.chat:
        messages: list[dict[str, str]] = []
        for example in task.few_shot:
            messages.append({"role": "user", "content": _body(task, form, example.text)})
            messages.append({"role": "assistant", "content": task.words(example.label)[0]})
        messages.append({"role": "user", "content": _body(task, form, text)})
        return messages
    blocks = [f"{_body(task, form, ex.text)}\n{task.answer_prefix} {task.words(ex.label)[0]}"
              for ex in task.few_shot]
    blocks.append(f"{_body(task, form, text)}\n{task.answer_prefix}")
    return "\n\n".join(blocks)


def render_all(task: ClassificationTask, text: str) -> list[Prompt]:
    """One prompt per template (the prompt ensemble)."""
    return [render(task, text, t) for t in range(len(task.templates))]


def label_indices(task: ClassificationTask, values: Sequence[object], *, where: str = "data") -> list[int]:
    """Gold labels (names, or integer indices into ``task.labels``) as indices; unknown values are an error.

    Integers and digit strings count as indices only when no label is itself spelt as a number.
    """
    by_name = {label: i for i, label in enumerate(task.labels)}
    by_lower = {label.lower(): i for i, label in enumerate(task.labels)}
    numeric_names = any(label.strip().lstrip("-").isdigit() for label in task.labels)
    out: list[int] = []
    unknown: dict[str, int] = {}
    for value in values:
        index = _index_of(value, by_name, by_lower, len(task.labels), numeric_names)
        if index is None:
            unknown[repr(value)] = unknown.get(repr(value), 0) + 1
            index = -1
        out.append(index)
    if unknown:
        listed = ", ".join(f"{v} ({n}x)" for v, n in sorted(unknown.items(), key=lambda kv: -kv[1])[:10])
        raise UserError(
            f"{where}: gold labels not in task.labels {task.labels}: {listed}. Add them to task.labels, or "
            f"map the column's values onto the labels (integers are read as positions in task.labels)."
        )
    return out


def _index_of(value: object, by_name: dict, by_lower: dict, n: int, numeric_names: bool) -> int | None:
    if hasattr(value, "item") and not isinstance(value, str):  # numpy scalars
        value = value.item()  # type: ignore[union-attr]
    if isinstance(value, bool):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int):
        if numeric_names:
            return by_name.get(str(value))
        return value if 0 <= value < n else None
    if isinstance(value, str):
        text = value.strip()
        if value in by_name or text.lower() in by_lower:
            return by_name.get(value, by_lower.get(text.lower()))
        if not numeric_names and text.isdigit():
            return _index_of(int(text), by_name, by_lower, n, numeric_names)
    return None
