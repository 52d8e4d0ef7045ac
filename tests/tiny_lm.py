"""Tiny random llamas and token data for the training tests: seconds, not minutes."""

from __future__ import annotations

import random

from transformers import LlamaForCausalLM

from protege.train.lm_data import LMExamples
from tiny import build_llama

VOCAB = 97


def tiny_llama(seed: int = 0, layers: int = 2, tie: bool = True) -> LlamaForCausalLM:
    """A trainable tiny llama over VOCAB ids; pad 0, EOS 2."""
    return build_llama(VOCAB, layers, seed, hidden=64, pad_id=0, tie=tie, max_positions=128).train()


def random_examples(n: int = 16, seed: int = 0, min_len: int = 6, max_len: int = 20) -> LMExamples:
    """Sequences of uneven length and uneven prompt/response split, so token counts differ per micro-batch."""
    rng = random.Random(seed)
    seqs, prompts = [], []
    for _ in range(n):
        length = rng.randint(min_len, max_len)
        seqs.append([rng.randrange(3, VOCAB) for _ in range(length)])
        prompts.append(rng.randint(1, length - 2))
    return LMExamples(seqs, prompts, pad_id=0)

