"""Tiny random llamas and token data for the training tests: seconds, not minutes."""

from __future__ import annotations

import random

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from protege.train.lm_data import LMExamples

VOCAB = 97


def tiny_llama(seed: int = 0, layers: int = 2, tie: bool = True) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=layers,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                         bos_token_id=1, eos_token_id=2, pad_token_id=0, tie_word_embeddings=tie)
    model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = 2
    model.generation_config.pad_token_id = 0
    return model


def random_examples(n: int = 16, seed: int = 0, min_len: int = 6, max_len: int = 20) -> LMExamples:
    """Sequences of uneven length and uneven prompt/response split, so token counts differ per micro-batch."""
    rng = random.Random(seed)
    seqs, prompts = [], []
    for _ in range(n):
        length = rng.randint(min_len, max_len)
        seqs.append([rng.randrange(3, VOCAB) for _ in range(length)])
        prompts.append(rng.randint(1, length - 2))
    return LMExamples(seqs, prompts, pad_id=0)

