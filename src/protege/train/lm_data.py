"""Prompt + response pairs as token sequences, and the batch source that pads them into LM micro-batches.

A micro-batch holds ``input_ids`` and ``attention_mask`` (B, L), right-padded, and ``loss_mask`` (B, L): True at
position ``i`` when the token at ``i + 1`` belongs to the response, i.e. where the model's prediction is scored.
Prompts are rendered the way the teacher saw them (the chat template with the assistant turn opened, when the
tokenizer has one); the response is tokenised on its own and closed with the EOS token, so the student learns
to stop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch

from protege.core import console
from protege.models.hf import render_prompt


def render(tokenizer: Any, prompt: str) -> str:
    """A user prompt as the model sees it before answering."""
    if getattr(tokenizer, "chat_template", None):
        return render_prompt(tokenizer, [{"role": "user", "content": prompt}])
    return prompt


def encode_prompt(tokenizer: Any, prompt: str) -> list[int]:
    chat = bool(getattr(tokenizer, "chat_template", None))
    return list(tokenizer(render(tokenizer, prompt), add_special_tokens=not chat)["input_ids"])


def encode_pair(tokenizer: Any, prompt: str, response: str, max_length: int) -> tuple[list[int], int]:
    """(token ids of prompt + response + EOS, truncated to ``max_length``; number of prompt tokens)."""
    prompt_ids = encode_prompt(tokenizer, prompt)
    response_ids = list(tokenizer(response, add_special_tokens=False)["input_ids"])
    if tokenizer.eos_token_id is not None:
        response_ids.append(tokenizer.eos_token_id)
    return (prompt_ids + response_ids)[:max_length], len(prompt_ids)


@dataclass
class LMExamples:
    """A :class:`~protege.train.loop.BatchSource` of tokenised prompt + response sequences."""

    sequences: list[list[int]]
    prompt_lengths: list[int]
    pad_id: int

    def __post_init__(self) -> None:
        if len(self.sequences) != len(self.prompt_lengths):
            raise ValueError(f"{len(self.sequences)} sequences but {len(self.prompt_lengths)} prompt lengths")

    @classmethod
    def from_pairs(cls, tokenizer: Any, prompts: Sequence[str], responses: Sequence[str], *,
                   max_length: int = 512) -> "LMExamples":
        """Tokenise pairs; pairs whose prompt leaves no room for a response token are dropped with a warning."""
        sequences, lengths = [], []
        for prompt, response in zip(prompts, responses, strict=True):
            ids, n_prompt = encode_pair(tokenizer, prompt, response, max_length)
            if len(ids) > n_prompt:
                sequences.append(ids)
                lengths.append(n_prompt)
        if len(sequences) < len(prompts):
            console.warn(f"{len(prompts) - len(sequences)} of {len(prompts)} examples dropped: the prompt alone "
                         f"fills max_length={max_length} tokens; raise max_length to keep them",
                         code="examples_dropped")
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        return cls(sequences, lengths, pad)

    def __len__(self) -> int:
        return len(self.sequences)

    def prompt(self, index: int) -> list[int]:
        return self.sequences[index][: self.prompt_lengths[index]]

    def batch(self, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        return collate([self.sequences[i] for i in indices], [self.prompt_lengths[i] for i in indices],
                       self.pad_id)


def collate(sequences: Sequence[list[int]], prompt_lengths: Sequence[int], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad sequences into ``input_ids``, ``attention_mask`` and ``loss_mask`` (see the module notes)."""
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(sequences), width), dtype=torch.long)
    loss_mask = torch.zeros((len(sequences), width), dtype=torch.bool)
    for row, (seq, n_prompt) in enumerate(zip(sequences, prompt_lengths)):
        ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        attention[row, : len(seq)] = 1
        loss_mask[row, max(n_prompt - 1, 0): len(seq) - 1] = True
    return {"input_ids": ids, "attention_mask": attention, "loss_mask": loss_mask}
