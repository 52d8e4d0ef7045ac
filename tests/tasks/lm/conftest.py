"""Fixtures for the LM-distillation data tests, on the tiny models of ``tests/tiny.py``."""

from __future__ import annotations

import json

import pytest
from tokenizers import Tokenizer
from transformers import PreTrainedTokenizerFast

from tiny import build_llama, build_tokenizer


@pytest.fixture(scope="session")
def tokenizer() -> PreTrainedTokenizerFast:
    return build_tokenizer()


@pytest.fixture(scope="session")
def teacher_model(tokenizer):
    return build_llama(len(tokenizer), layers=2, seed=1)


@pytest.fixture
def renamed_tokenizer(tokenizer) -> PreTrainedTokenizerFast:
    """The same tokenizer with one ordinary vocabulary entry (id 100) spelled 'zzqq' instead."""
    data = json.loads(tokenizer.backend_tokenizer.to_str())
    vocab = data["model"]["vocab"]
    victim = next(t for t, i in vocab.items() if i == 100)
    vocab["zzqq"] = vocab.pop(victim)
    changed = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(json.dumps(data)), bos_token=tokenizer.bos_token,
        eos_token=tokenizer.eos_token, unk_token=tokenizer.unk_token, pad_token=tokenizer.pad_token,
    )
    changed.chat_template = tokenizer.chat_template
    return changed
