"""Fixtures for the LM-distillation data tests: the tiny tokenizer and llama of tests/models, one definition."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location("tiny_models", Path(__file__).parents[1] / "models" / "conftest.py")
tiny_models = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tiny_models)
build_tokenizer = tiny_models.build_tokenizer
build_llama = tiny_models.build_llama


@pytest.fixture(scope="session")
def tokenizer():
    return build_tokenizer()


@pytest.fixture(scope="session")
def teacher_model(tokenizer):
    return build_llama(len(tokenizer), layers=2, seed=1)
