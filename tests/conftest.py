"""Shared test set-up: this folder is on sys.path, so any test can ``import tiny`` for small stand-in models;
the tiny tokenizer and teacher below are fixtures for every folder.

Under CI (``CI`` set) hypothesis draws the same examples every run, so a landing never hinges on a lucky draw;
locally it keeps exploring new ones.
"""

import json
import os

import pytest
from hypothesis import settings
from tokenizers import Tokenizer
from transformers import PreTrainedTokenizerFast

from tiny import build_llama, build_tokenizer

settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture(autouse=True)
def _fresh_console():
    """The console is process-wide state a CLI test may point at its own (then closed) stdout; reset it after."""
    yield
    from protege.core import console

    console.configure(quiet=False, jsonl=None)


@pytest.fixture(scope="module")
def one_thread():
    """Intra-op threads for the module's tests: one. A tiny model gains nothing from them, and on a busy 2-core
    machine the second thread spins (a tagger test took 40 s with two, 1 s with one). Use it with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


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
