"""Cleaning and reading teacher rationales: run-on cuts, five sentiment levels, overall polarity, star ratings."""

from __future__ import annotations

import pytest

from protege.tasks.absa.rationale_text import clean, kind_of, parse_analysis, read_level, star_polarity

ANALYSIS = """Opinion Target 1: "battery"
Aspect: Battery life
Sentiment: Very Positive
Reasoning: "lasts all day" praises it.

**Opinion Target 2:** "keyboard"
**Aspect:** Comfort
**Sentiment:** Mildly negative
**Reasoning:** The keys are "a bit stiff",
which the reviewer minds only a little.

Aspect: Price
Sentiment: Neutral
Reasoning: stated without judgement."""


def test_a_structured_analysis_reads_into_opinions_with_levels():
    a = parse_analysis(ANALYSIS)
    assert [(o.target, o.aspect, o.level) for o in a.opinions] == [
        ("battery", "Battery life", "very positive"),
        ("keyboard", "Comfort", "negative"),
        ("", "Price", "neutral"),  # a repeated Aspect key starts a new opinion even without a target line
    ]
    assert a.opinions[1].reasoning.endswith("only a little.")  # continuation lines join the reasoning
    assert a.parsed and a.overall == "positive" and not a.stated_overall  # +2 -1 +0 > 0


def test_an_explicit_overall_line_wins_over_the_sum():
    a = parse_analysis(ANALYSIS + "\nOverall: negative")
    assert a.overall == "negative" and a.stated_overall


@pytest.mark.parametrize(
    "word, level",
    [
        ("Very Positive", "very positive"),
        ("extremely negative.", "very negative"),
        ("Positive ", "positive"),
        ("slightly negative", "negative"),
        ("Mixed", "neutral"),
        ("Mild", None),
        ("Mild Sentiment", None),
        ("", None),
    ],
)
def test_sentiment_words_map_to_five_levels(word, level):
    assert read_level(word) == level


def test_sentiment_without_polarity_is_counted_not_parsed():
    a = parse_analysis('Opinion Target 1: "menu"\nAspect: Range\nSentiment: Mild\nReasoning: unsure.')
    assert a.structured and not a.parsed and a.unreadable == 1 and a.overall is None
    empty = parse_analysis("Opinion Target 1: x\nAspect:\nSentiment:\nReasoning:")
    assert not empty.parsed and empty.overall is None


def test_a_rewrite_is_not_an_analysis():
    text = "I was thrilled with this laptop: the battery lasts all day and I love the screen."
    assert kind_of(text) == "rewrite" and kind_of(ANALYSIS) == "analysis"
    assert parse_analysis(text).overall is None


def test_clean_cuts_the_run_on_review_the_teacher_invented():
    text = ANALYSIS + "\n\nConsider the following reviews:\n\nReview: great phone\nOpinion Target 1: phone"
    cleaned = clean(text)
    assert cleaned.text == ANALYSIS and cleaned.cut == "run_on" and not cleaned.too_short
    assert clean(ANALYSIS + "\n---\nReview: more").text == ANALYSIS


def test_clean_cuts_chat_tokens_and_loops_and_keeps_a_leading_heading():
    assert clean("I loved it, truly.<|im_end|>\n<|im_start|>user\nagain").text == "I loved it, truly."
    line = "The screen is bright and sharp, the best part of this purchase by far."
    looped = clean(f"{line}\nThe keyboard is fine.\n{line}\n{line}")
    assert looped.text == f"{line}\nThe keyboard is fine." and looped.cut == "repeat"
    heading = clean("Response: I enjoyed every minute of the meal and the kind staff.")
    assert heading.cut is None and heading.text.startswith("Response:")  # nothing came before the marker


def test_short_text_is_flagged_not_dropped():
    cleaned = clean("  Good.  ", min_chars=40)
    assert cleaned.text == "Good." and cleaned.too_short
    assert clean(None).too_short and clean(None).text == ""


@pytest.mark.parametrize("rating, polarity", [(1.0, "negative"), (2, "negative"), (3.0, "neutral"),
                                              (4.0, "positive"), (5, "positive"), (None, None),
                                              (float("nan"), None)])
def test_star_ratings_read_as_polarity(rating, polarity):
    assert star_polarity(rating) == polarity
