"""Stand-ins for the teacher: a scripted scorer whose numbers are known in advance, and a tiny real llama."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from protege.models.base import Prompt

# Label words the scripted teacher recognises, and its prior: it leans to "positive" whatever the text says.
PRIOR = {"positive": -0.5, "negative": -2.0, "neutral": -3.0}
CUE = 1.0


def text_of(prompt: Prompt) -> str:
    return prompt if isinstance(prompt, str) else prompt[-1]["content"]


class ScriptedTeacher:
    """score = PRIOR[word] + CUE if the word occurs in the text after 'Text:'; counts every backend call."""

    backend = "fake"

    def __init__(self, model_id: str = "scripted", fail_after: int | None = None):
        self.model_id = model_id
        self.calls = 0  # prompts scored by the backend
        self.fail_after = fail_after  # raise once this many prompts were scored: a crash mid-run

    def score(self, prompts: Sequence[Prompt], continuations: Sequence[Sequence[str]]) -> list[list[float]]:
        out = []
        for prompt, words in zip(prompts, continuations):
            if self.fail_after is not None and self.calls >= self.fail_after:
                raise KeyboardInterrupt("simulated kill")
            self.calls += 1
            body = text_of(prompt).split("Text:", 1)[-1]
            out.append([PRIOR[w.strip()] + (CUE if w.strip() in body else 0.0) for w in words])
        return out

    def generate(self, prompts, params):  # pragma: no cover - not used by classification
        raise NotImplementedError

    def topk_logprobs(self, prompts, completions, k):  # pragma: no cover
        raise NotImplementedError


CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
WORDS = ["positive", "negative", "good", "bad", "film", "great", "awful", "the", "was", "a", "Text", ":", ".",
         "Classify", "text", "as", "one", "of", ",", "Answer", "with", "word", "user", "assistant", "\n"]


def word_tokenizer() -> PreTrainedTokenizerFast:
    """Whole words as tokens, so every label word is one token and prompts are short."""
    specials = ["<unk>", "<|im_start|>", "<|im_end|>"]
    vocab = {w: i for i, w in enumerate(specials + WORDS)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()]
    )
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<|im_start|>",
                                   eos_token="<|im_end|>", pad_token="<|im_end|>")
    fast.chat_template = CHATML
    return fast


def tiny_llama(vocab_size: int, seed: int = 0) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=256, bos_token_id=1, eos_token_id=2, pad_token_id=2,
    )
    return LlamaForCausalLM(config).eval()


def saved_tiny_teacher(folder: Path) -> Path:
    """A tiny random Llama with the word tokenizer, saved as a model folder the hf backend loads by path."""
    tokenizer = word_tokenizer()
    tiny_llama(len(tokenizer)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
