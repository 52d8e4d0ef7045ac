"""Tiny, randomly initialised models and tokenizers shared by the tests: seconds, not minutes."""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
CORPUS = [
    "the movie was great and the acting was wonderful",
    "a terrible film, boring and far too long",
    "review: positive negative neutral sentiment label answer",
    "what is two plus three? the answer is five",
] * 20


def build_tokenizer(extra_corpus: tuple[str, ...] = (), vocab_size: int = 300) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer with ChatML special tokens, trained in milliseconds."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(CORPUS + list(extra_corpus), trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<|im_start|>", eos_token="<|im_end|>", unk_token="<|endoftext|>",
        pad_token="<|im_end|>",
    )
    fast.chat_template = CHATML
    return fast


def build_llama(vocab_size: int, layers: int = 4, seed: int = 0, hidden: int = 32, *, pad_id: int = 2,
                tie: bool = False, max_positions: int = 512) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=max_positions,
        bos_token_id=1, eos_token_id=2, pad_token_id=pad_id, tie_word_embeddings=tie,
    )
    model = LlamaForCausalLM(config).eval()
    model.generation_config.eos_token_id = 2
    model.generation_config.pad_token_id = pad_id
    return model


def save_tiny_causal_lm(folder: Path, layers: int = 4, hidden: int = 32) -> Path:
    """A loadable model folder (config, weights, tokenizer): what a user's local checkpoint looks like."""
    tokenizer = build_tokenizer()
    build_llama(len(tokenizer), layers=layers, hidden=hidden).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
