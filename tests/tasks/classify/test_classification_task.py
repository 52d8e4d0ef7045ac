"""The classification task: prompts, verbalizers, and gold-label mapping."""

from __future__ import annotations

import math

import pytest
from pydantic import ValidationError

from protege.tasks.classify.task import (
    ClassificationTask, continuations, label_indices, label_of_continuation, label_scores, render, render_all,
)


def make(**kw) -> ClassificationTask:
    return ClassificationTask(labels=["negative", "positive"], **kw)


def test_chat_prompt_puts_few_shot_answers_where_the_scored_answer_goes():
    task = make(few_shot=[{"text": "awful", "label": "negative"}], verbalizers={"positive": ["good", "great"]})
    prompt = render(task, "a fine film")
    assert [m["role"] for m in prompt] == ["user", "assistant", "user"]
    assert prompt[1]["content"] == "negative"
    assert prompt[2]["content"].endswith("Text: a fine film")
    assert "negative, good" in prompt[2]["content"]  # the instruction lists each label's first word
    assert continuations(task) == ["negative", "good", "great"]
    assert label_of_continuation(task) == [0, 1, 1]


def test_plain_prompt_ends_with_answer_prefix_and_words_get_a_space():
    task = make(chat=False, few_shot=[{"text": "great", "label": "positive"}], templates=["Review: {text}"])
    prompt = render(task, "dull")
    assert prompt == "Review: great\nAnswer: positive\n\nReview: dull\nAnswer:"
    assert continuations(task) == [" negative", " positive"]


def test_render_all_gives_one_prompt_per_template():
    task = make(templates=["A {text}", "B {text}", "C {text}"], chat=False)
    assert [p.split("\n")[0] for p in render_all(task, "x")] == ["A x", "B x", "C x"]


def test_label_score_is_log_of_summed_word_probabilities():
    task = make(verbalizers={"positive": ["good", "great"]})
    got = label_scores(task, [math.log(0.1), math.log(0.2), math.log(0.3)])
    assert got == pytest.approx([math.log(0.1), math.log(0.5)])


@pytest.mark.parametrize("values, want", [
    (["positive", "negative"], [1, 0]),
    (["Positive ", "NEGATIVE"], [1, 0]),
    ([1, 0, 1.0], [1, 0, 1]),
    (["1", "0"], [1, 0]),
])
def test_label_indices_accept_names_and_positions(values, want):
    assert label_indices(make(), values) == want


def test_numeric_label_names_match_by_name_not_position():
    task = ClassificationTask(labels=["1", "5"])
    assert label_indices(task, [5, "1"]) == [1, 0]
    with pytest.raises(ValueError, match="0"):
        label_indices(task, [0])


def test_unknown_gold_labels_are_listed_with_counts():
    with pytest.raises(ValueError) as err:
        label_indices(make(), ["positive", "mixed", "mixed", 7], where="reviews.csv")
    message = str(err.value)
    assert "reviews.csv" in message and "'mixed' (2x)" in message and "7 (1x)" in message


@pytest.mark.parametrize("kw, fragment", [
    ({"labels": ["a", "a"]}, "duplicates"),
    ({"labels": ["a", "b"], "verbalizers": {"c": ["x"]}}, "not in task.labels"),
    ({"labels": ["a", "b"], "few_shot": [{"text": "t", "label": "z"}]}, "few_shot"),
    ({"labels": ["a", "b"], "templates": ["no placeholder"]}, "{text}"),
])
def test_invalid_tasks_say_what_is_wrong(kw, fragment):
    with pytest.raises(ValidationError, match=fragment.replace("{", r"\{").replace("}", r"\}")):
        ClassificationTask(**kw)
