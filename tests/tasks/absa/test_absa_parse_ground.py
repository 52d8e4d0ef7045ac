"""Parsing teacher answers into (term, polarity) pairs, grounding terms to spans, and normalisation."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protege.tasks.absa.ground import ground_term, normalise, tokens
from protege.tasks.absa.parse import parse_pairs
from protege.tasks.absa.task import AbsaTask, Aspect

TASK = AbsaTask()


@pytest.mark.parametrize("answer, pairs", [
    ('[["battery life", "positive"], ["screen", "negative"]]',
     [("battery life", "positive"), ("screen", "negative")]),
    ("Here you go:\n```python\n[('keyboard', 'neutral')]\n```", [("keyboard", "neutral")]),
    ('[{"aspect": "food", "sentiment": "pos"}, {"term": "staff", "polarity": "neg"}]',
     [("food", "pos"), ("staff", "neg")]),
    ('{"aspects": [["wine list", "positive"]]}', [("wine list", "positive")]),
    ("battery | positive ; hard drive | negative", [("battery", "positive"), ("hard drive", "negative")]),
    ("1. price: negative\n2. screen size: positive", [("price", "negative"), ("screen size", "positive")]),
    ("- well-built case - positive\n- (fan, negative)",
     [("well-built case", "positive"), ("fan", "negative")]),
    # GPT-3.5 sometimes fuses a pair into one string; the last separator splits it.
    ([["build quality, 'negative"]], [("build quality", "negative")]),
    (["screen", "positive"], [("screen", "positive")]),
    ("[['a, b', 'positive']", [("a, b", "positive")]),  # an unclosed list is read as plain text
])
def test_parse_common_shapes(answer, pairs):
    out = parse_pairs(answer)
    assert out.parsed and out.pairs == pairs


@pytest.mark.parametrize("answer, parsed", [("[]", True), ("None.", True), ("", False), ("   ", False),
                                            (None, False), (42, False), ("The food was lovely", False)])
def test_parse_empty_and_unreadable(answer, parsed):
    out = parse_pairs(answer)
    assert out.pairs == [] and out.parsed is parsed


def test_parse_counts_unreadable_items():
    out = parse_pairs('[["screen", "positive"], ["lonely"], 7, {"term": "fan"}]')
    assert out.pairs == [("screen", "positive")] and out.skipped == 3 and out.parsed


@given(st.one_of(st.text(max_size=200), st.lists(st.one_of(st.text(max_size=10), st.integers(),
                                                           st.lists(st.text(max_size=5), max_size=3)),
                                                 max_size=5)))
def test_parse_never_crashes(answer):
    out = parse_pairs(answer)
    assert all(isinstance(t, str) and isinstance(p, str) and t and p for t, p in out.pairs)


S = "The screen made of glass was great, but the hard drive lights and the charger failed."


@pytest.mark.parametrize("term, expected, how", [
    ("glass", "glass", "exact"),
    ("Screen", "screen", "case"),
    ("hard drive light", "hard drive lights", "exact"),  # extended to the end of the word
    ("glass screen", "screen", "tokens"),  # two one-word runs: the earliest wins
    ("the charger unit", "charger", "tokens"),  # stopwords trimmed from the run
    ("HARD DRIVE status", "hard drive", "tokens"),
])
def test_ground_term(term, expected, how):
    span, used = ground_term(S, term)
    assert used == how and S[span[0]:span[1]] == expected


@pytest.mark.parametrize("term", ["syncing", "", "of the", "ass", "wine selection in"])
def test_ground_term_fails_cleanly(term):
    # "ass" sits inside "glass" (not at a word start); "of the" holds no content word.
    assert ground_term("The screen made of glass, in short.", term) == (None, "ungrounded")


def test_ground_never_picks_a_stopword_inside_a_term():
    sentence = "Great food, and a great selection of wines in the cellar."
    span, how = ground_term(sentence, "wine selection")
    assert sentence[span[0]:span[1]] == "selection" and how == "tokens"


def test_ground_skips_taken_spans():
    sentence = "Charging was slow and charging again was slower."
    first, _ = ground_term(sentence, "charging")
    second, _ = ground_term(sentence, "charging", [first])
    assert first == (22, 30) and second == (0, 8)  # exact before case-insensitive, then the other occurrence


@given(st.text(alphabet="ab .,'-", max_size=30), st.text(alphabet="ab .-", max_size=8))
def test_grounded_spans_are_inside_and_nonempty(sentence, term):
    span, how = ground_term(sentence, term)
    if span is not None:
        assert 0 <= span[0] < span[1] <= len(sentence)
        if how == "exact":
            assert sentence[span[0]:span[1]].startswith(" ".join(term.split()))


def test_tokens_keep_inner_hyphens_and_apostrophes():
    words = [t[0] for t in tokens("It's well-built, isn't it?")]
    assert words == ["It's", "well-built", ",", "isn't", "it", "?"]


def test_normalise_maps_grounds_orders_and_counts():
    sentence = "The Keyboard is fine but the battery life and the keyboard light are poor."
    raw = [("battery life", "Negative"), ("keyboard", "pos"), ("keyboard", "+"), ("fan", "negative"),
           ("battery life", "bad"), ("price", "mixed"), ("screen", "awesome")]
    out = normalise(sentence, raw, TASK)
    assert out.aspects == (
        Aspect(4, 12, "Keyboard", "positive"), Aspect(29, 41, "battery life", "negative"),
        Aspect(50, 58, "keyboard", "positive"),
    )
    assert dict(out.issues.counts) == {"grounded_case": 1, "ungrounded": 1, "duplicate_span": 1,
                                       "conflict_dropped": 1, "unknown_polarity": 1}
    assert out.kept_verbatim == 0  # "Negative" and "+" are not the canonical words, "Keyboard" changed case


def test_normalise_keeps_conflict_when_asked():
    out = normalise("Pricey but worth it.", [["worth", "conflict"]], AbsaTask(drop_conflict=False))
    assert out.aspects == (Aspect(11, 16, "worth", "conflict"),) and out.kept_verbatim == 1


def test_task_synonyms_extend_and_are_checked():
    task = AbsaTask(synonyms={"Thumbs-Up": "positive"})
    assert task.read_polarity("thumbs-up") == "positive" and task.read_polarity(" 'neg' ") == "negative"
    with pytest.raises(ValueError, match="synonyms"):
        AbsaTask(synonyms={"meh": "lukewarm"})
    assert AbsaTask(drop_conflict=False).labels == ("positive", "negative", "neutral", "conflict")
