"""Token-level KD preflight: the same tokenizer passes; any vocabulary, special-token or template difference is an
error that names it and points to sequence-level KD."""

from __future__ import annotations

import pytest

from protege.train.preflight import TokenizerMismatchError, check_token_kd

from tiny import build_tokenizer


def test_the_same_tokenizer_passes(tokenizer):
    assert check_token_kd(tokenizer, build_tokenizer()).ok


def test_one_changed_token_is_named(tokenizer, renamed_tokenizer):
    with pytest.raises(TokenizerMismatchError) as err:
        check_token_kd(tokenizer, renamed_tokenizer)
    message = str(err.value)
    assert "'zzqq'" in message and "missing from the teacher" in message
    assert "sequence level" in message and "'respond'" in message and "sft" in message


def test_special_tokens_and_chat_template_are_named(tokenizer):
    student = build_tokenizer()
    student.chat_template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    student.eos_token = "<|endoftext|>"
    with pytest.raises(TokenizerMismatchError) as err:
        check_token_kd(tokenizer, student)
    assert "chat templates differ" in str(err.value) and "eos_token differs" in str(err.value)
